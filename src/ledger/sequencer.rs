//! Group commit. Every disclosure waits for its log entry to be durable; one
//! fsync per request would cap the gateway at the disk's sync rate. Work
//! queues here; one task takes everything queued, runs it in a single
//! transaction, writes the batch's entries with a few multi-row inserts,
//! commits once, and only then answers each caller. While a batch commits,
//! the next one fills.
//!
//! Entries are built in memory: the task keeps the right edge of the Merkle
//! tree between batches (and reloads it when another instance appended in
//! between), so an append costs no database round trip of its own.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::merkle::{CompactRange, leaf_hash};
use super::{Core, Draft, Receipt};
use crate::store::WriteTx;
use crate::store::ledger::EntryRow;

/// Most jobs in one transaction.
const MAX_BATCH: usize = 512;

/// The log could not be written (or committed): the caller must release
/// nothing. The cause is in the operator's log.
#[derive(Debug, Clone, Copy)]
pub struct Unavailable;

impl From<Unavailable> for crate::problem::Problem {
    fn from(_: Unavailable) -> Self {
        Self::unavailable("the disclosure log could not be written; nothing was disclosed")
    }
}

/// What a unit of work gets: the batch transaction for its own state
/// changes (it holds the log head lock from its start to its commit), and
/// the one way to append its entry. A unit must not await anything that
/// itself needs the log (that would wait on its own batch).
pub struct Unit<'a> {
    tx: &'a mut WriteTx,
    log: &'a mut Pending,
}

impl Unit<'_> {
    pub fn tx(&mut self) -> &mut WriteTx {
        self.tx
    }

    /// Appends the unit's entry; it is written and committed with the batch.
    pub fn append(&mut self, draft: Draft) -> Receipt {
        self.log.append(draft)
    }
}

type UnitFn =
    Box<dyn for<'a> FnOnce(Unit<'a>) -> BoxFuture<'a, Result<Receipt, sqlx::Error>> + Send>;

/// What the log commits: a bare entry, or a unit of work with state changes.
pub enum Work {
    Entry(Box<Draft>),
    Unit(UnitFn),
}

/// A unit of work (the helper lets the compiler see the lifetimes).
pub fn work<F>(f: F) -> Work
where
    F: for<'a> FnOnce(Unit<'a>) -> BoxFuture<'a, Result<Receipt, sqlx::Error>> + Send + 'static,
{
    Work::Unit(Box::new(f))
}

pub struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Receipt, Unavailable>>,
}

pub(super) fn start(core: Arc<Core>) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
    tokio::spawn(run(core, rx));
    tx
}

pub(super) async fn submit(queue: &mpsc::Sender<Job>, work: Work) -> Result<Receipt, Unavailable> {
    let (reply, answer) = oneshot::channel();
    queue
        .send(Job { work, reply })
        .await
        .map_err(|_| Unavailable)?;
    answer.await.unwrap_or(Err(Unavailable))
}

/// The entries of the batch being built, on top of the tree's right edge.
pub struct Pending {
    tree: CompactRange,
    rows: Vec<EntryRow>,
    refs: crate::crypto::Pseudonymizer,
}

impl Pending {
    fn append(&mut self, draft: Draft) -> Receipt {
        let now = time::OffsetDateTime::now_utc();
        let index = self.tree.size();
        let entry = draft.into_entry(index, now, &self.refs);
        let leaf = entry.encode();
        let hash = leaf_hash(&leaf);
        let hashes = self.tree.push(hash);
        self.rows.push(EntryRow {
            idx: index,
            leaf,
            leaf_hash: hash,
            ts: (now.unix_timestamp_nanos() / 1_000_000) as i64,
            action: entry.action.as_str(),
            actor_partner: entry.actor.partner,
            actor_role: entry.actor.role,
            recipient: entry.recipient,
            purpose: entry.purpose,
            outcome: entry.outcome.as_str(),
            subjects: entry.subjects,
            hashes,
        });
        Receipt {
            index,
            leaf_hash: hash,
        }
    }
}

async fn run(core: Arc<Core>, mut rx: mpsc::Receiver<Job>) {
    // The right edge after the last committed batch of this instance.
    let mut edge: Option<CompactRange> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        edge = commit_batch(&core, edge.take(), batch).await;
    }
}

/// Runs one batch; returns the new right edge if it committed.
async fn commit_batch(
    core: &Core,
    edge: Option<CompactRange>,
    batch: Vec<Job>,
) -> Option<CompactRange> {
    let size = batch.len();
    let (mut tx, tree) = match begin(core, edge).await {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error = %e, "disclosure log: cannot begin a batch");
            for job in batch {
                let _ = job.reply.send(Err(Unavailable));
            }
            return None;
        }
    };
    let mut log = Pending {
        tree,
        rows: Vec::with_capacity(size),
        refs: core.refs.clone(),
    };
    let mut done = Vec::with_capacity(size);
    for job in batch {
        let outcome = match job.work {
            Work::Entry(draft) => Ok(log.append(*draft)),
            Work::Unit(f) => run_unit(&mut tx, &mut log, f).await,
        };
        match outcome {
            Ok(receipt) => done.push((job.reply, receipt)),
            Err(e) => {
                tracing::error!(error = %e, "disclosure log: a unit of work failed; it was rolled back");
                let _ = job.reply.send(Err(Unavailable));
            }
        }
    }
    let written = async {
        tx.insert_log_entries(&log.rows).await?;
        tx.commit().await
    }
    .await;
    match written {
        Ok(()) => {
            metrics::histogram!("ketenpoort_log_batch_size").record(log.rows.len() as f64);
            for row in &log.rows {
                metrics::counter!("ketenpoort_log_appends_total", "action" => row.action)
                    .increment(1);
            }
            for (reply, receipt) in done {
                let _ = reply.send(Ok(receipt));
            }
            Some(log.tree)
        }
        Err(e) => {
            tracing::error!(error = %e, "disclosure log: writing the batch failed; nothing was released");
            for (reply, _) in done {
                let _ = reply.send(Err(Unavailable));
            }
            None
        }
    }
}

/// Opens the batch transaction, locks the log head, and brings the right
/// edge up to the head (reloading it if someone else appended).
async fn begin(
    core: &Core,
    edge: Option<CompactRange>,
) -> Result<(WriteTx, CompactRange), sqlx::Error> {
    let mut tx = core.db.begin_write().await?;
    let size = tx.lock_log_head().await?;
    let tree = match edge {
        Some(e) if e.size() == size => e,
        _ => {
            let ids = CompactRange::edge_ids(size);
            let stored = tx.log_hashes(&ids).await?;
            let hashes = ids
                .iter()
                .map(|id| stored.get(id).copied())
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    sqlx::Error::Protocol("the log's tree hashes are incomplete".into())
                })?;
            CompactRange::resume(size, &hashes)
        }
    };
    Ok((tx, tree))
}

/// One unit under its own savepoint; a failed unit leaves no entry behind.
async fn run_unit(tx: &mut WriteTx, log: &mut Pending, f: UnitFn) -> Result<Receipt, sqlx::Error> {
    tx.savepoint().await?;
    let mark = (log.rows.len(), log.tree.clone());
    let result = f(Unit { tx, log }).await;
    match result {
        Ok(receipt) => {
            tx.release_savepoint().await?;
            Ok(receipt)
        }
        Err(e) => {
            log.rows.truncate(mark.0);
            log.tree = mark.1;
            tx.rollback_to_savepoint().await?;
            Err(e)
        }
    }
}
