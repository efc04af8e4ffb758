//! Published checkpoints: how much of the log's growth a partner outside
//! the covenant sees (issue 13, the real-time channel).
//!
//! The log grows by one entry per exchange, so its size read on demand
//! would show a non-member every submission, read and referral as it
//! happens. A non-member therefore sees the log only as it was at the last
//! publication: the newest checkpoint signed at or before the last multiple
//! of `log.publish_interval_secs` since the Unix epoch. That is a rule over
//! the stored checkpoints and their signing times, not a state of its own:
//! every instance sharing one database computes the same checkpoint without
//! coordinating, and nothing needs migrating. Checkpoints are signed as
//! before (every `log.checkpoint_every` entries, every
//! `log.checkpoint_interval_secs` while the log grows, and on a member's
//! demand), so the published one is at most that old at the boundary.
//!
//! Before the first boundary after a log's creation no checkpoint was signed
//! by then: the log's first checkpoint (signed at the first start, the empty
//! tree) stands in, which says nothing about any exchange.

use std::time::Duration;

use super::Ledger;
use crate::store::ledger::StoredCheckpoint;

/// The last publication at or before `now_ms` (milliseconds since the Unix
/// epoch): a multiple of `interval` (at least one second).
pub fn last_boundary(now_ms: i64, interval: Duration) -> i64 {
    let every = i64::try_from(interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1000);
    now_ms.div_euclid(every) * every
}

impl Ledger {
    /// The checkpoint published at `now_ms`: the newest one signed at or
    /// before the last boundary; before there is one, the log's first.
    pub async fn published_checkpoint(
        &self,
        interval: Duration,
        now_ms: i64,
    ) -> Result<Option<StoredCheckpoint>, sqlx::Error> {
        let boundary = last_boundary(now_ms, interval);
        match self.core.db.checkpoint_signed_by(boundary).await? {
            Some(cp) => Ok(Some(cp)),
            None => self.core.db.first_checkpoint().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_multiples_of_the_interval() {
        let hour = Duration::from_secs(3600);
        assert_eq!(last_boundary(0, hour), 0);
        assert_eq!(last_boundary(3_599_999, hour), 0);
        assert_eq!(last_boundary(3_600_000, hour), 3_600_000);
        assert_eq!(last_boundary(7_300_000, hour), 7_200_000);
        // Below a second counts as a second.
        assert_eq!(last_boundary(1_500, Duration::ZERO), 1_000);
        assert_eq!(last_boundary(1_500, Duration::from_millis(10)), 1_000);
    }
}
