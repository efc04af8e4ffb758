//! Retention (invariant 7): signals past `retention.signal_days` lose their
//! data key and every row holding their personal data. The disclosure log
//! keeps its entries — they hold pseudonyms and field names only.

use std::time::Duration;

use crate::config::RetentionConfig;
use crate::store::{Db, now_millis};

/// The statements one signal's purge may take, for its deadline.
const PURGE_STATEMENTS: u32 = 16;

/// Purges every expired signal; returns how many were purged.
pub async fn purge_expired(db: &Db, cfg: &RetentionConfig) -> Result<usize, sqlx::Error> {
    // Kept answers to writes with an Idempotency-Key, past their keeping time.
    db.purge_idempotency_keys(now_millis()).await?;
    let cutoff = now_millis() - i64::from(cfg.signal_days) * 86_400_000;
    let mut purged = 0;
    loop {
        let batch = db.signals_created_before(cutoff, 500).await?;
        if batch.is_empty() {
            db.erase_deleted().await?;
            return Ok(purged);
        }
        for id in &batch {
            db.bounded(PURGE_STATEMENTS, async {
                let mut tx = db.begin_write().await?;
                tx.bound_statements(db.bounds().statement_timeout_secs)
                    .await?;
                tx.purge_signal(id).await?;
                tx.commit().await
            })
            .await?;
            purged += 1;
        }
        metrics::counter!("ketenpoort_retention_purged_total").increment(batch.len() as u64);
    }
}

pub async fn run(db: Db, cfg: RetentionConfig) {
    loop {
        match purge_expired(&db, &cfg).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "retention purged expired signals"),
            Err(e) => tracing::error!(error = %e, "retention run failed"),
        }
        tokio::time::sleep(Duration::from_secs(cfg.interval_secs.max(1))).await;
    }
}
