//! The weekly counts of the log (`store::log_counts`): what an entry counts
//! as, and counting a log that predates the counts when it is opened. The
//! sequencer adds the counts of every batch it appends in the batch's
//! transaction, each entry's key from [`key_of`]; `log verify` recomputes
//! them from the leaf bytes by the same rule (`verify::Verifier::count`).

use time::format_description::well_known::Rfc3339;

use super::entry::{Entry, Outcome};
use crate::store::Db;
use crate::store::log_counts::{CountKey, Counts, week_of};

/// Entries read per step while counting an existing log.
const STEP: u64 = 5_000;

/// The milliseconds since the epoch of an entry's `time` (None: not RFC 3339).
pub fn time_ms(time: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(time, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The row an entry is counted in.
pub fn key_of(
    ts_ms: i64,
    action: &str,
    actor_partner: &str,
    recipient: Option<&str>,
    purpose: Option<&str>,
    outcome: Outcome,
    first_reason: Option<&str>,
) -> CountKey {
    CountKey {
        week: week_of(ts_ms),
        action: action.to_owned(),
        actor_partner: actor_partner.to_owned(),
        recipient: recipient.unwrap_or_default().to_owned(),
        purpose: purpose.unwrap_or_default().to_owned(),
        outcome: outcome.as_str().to_owned(),
        reason: match outcome {
            Outcome::Denied => first_reason.unwrap_or_default().to_owned(),
            _ => String::new(),
        },
    }
}

/// The row a decoded entry is counted in.
pub fn key_of_entry(e: &Entry) -> Option<CountKey> {
    Some(key_of(
        time_ms(&e.time)?,
        e.action.as_str(),
        &e.actor.partner,
        e.recipient.as_deref(),
        e.purpose.as_deref(),
        e.outcome,
        e.decision.reasons.first().map(String::as_str),
    ))
}

/// Counts the entries the counts do not cover yet (a log written before
/// migration 0020), under the log head's lock so that no batch is appended
/// meanwhile. Returns how many entries it counted.
pub async fn catch_up(db: &Db) -> anyhow::Result<u64> {
    if db.log_origin().await?.is_none() {
        return Ok(0); // no log yet
    }
    let size = db.log_size().await?;
    let counted = db.log_counts_total().await?;
    if counted == size {
        return Ok(0);
    }
    anyhow::ensure!(
        counted < size,
        "the disclosure log's weekly counts add up to {counted} entries, more than the log's {size}: \
         the table log_counts was changed (run `ketenpoort log verify`)"
    );
    let mut tx = db.begin_write().await?;
    let size = tx.lock_log_head().await?;
    let mut from = db.log_counts_total().await?;
    let start = from;
    tracing::info!(
        entries = size - from,
        "disclosure log: counting the entries written before the weekly counts"
    );
    while from < size {
        let to = (from + STEP).min(size);
        let mut counts = Counts::default();
        for stored in db.log_entries(from, to).await? {
            let key = stored.entry().as_ref().and_then(key_of_entry);
            let Some(key) = key else {
                anyhow::bail!(
                    "disclosure log entry {} cannot be read: not counted (run `ketenpoort log verify`)",
                    stored.idx
                );
            };
            counts.add(key);
        }
        tx.add_log_counts(&counts).await?;
        from = to;
    }
    tx.commit().await?;
    Ok(size - start)
}
