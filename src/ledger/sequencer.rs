//! Group commit. Every disclosure waits for its log entry to be durable; one
//! fsync per request would cap the gateway at the disk's sync rate. Units of
//! work queue here; one task runs all queued units in a single transaction
//! (each under its own savepoint, so one failing unit rolls back alone),
//! commits once, and only then answers each caller. While a batch commits,
//! the next one fills.

use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::Executor;
use tokio::sync::{mpsc, oneshot};

use super::{Core, Draft, Receipt};
use crate::store::WriteTx;

/// Most units in one transaction.
const MAX_BATCH: usize = 256;

/// The log could not be written (or committed): the caller must release
/// nothing. The cause is in the operator's log.
#[derive(Debug, Clone, Copy)]
pub struct Unavailable;

/// What a unit of work gets: the batch transaction for its own state
/// changes, and the one way to append its entry. A unit must not await
/// anything that itself needs the log (that would wait on its own batch).
pub struct Unit<'a> {
    tx: &'a mut WriteTx,
    core: &'a Core,
}

impl Unit<'_> {
    pub fn tx(&mut self) -> &mut WriteTx {
        self.tx
    }

    pub async fn append(&mut self, draft: Draft) -> Result<Receipt, sqlx::Error> {
        self.core.append(self.tx, draft).await
    }
}

pub type Work =
    Box<dyn for<'a> FnOnce(Unit<'a>) -> BoxFuture<'a, Result<Receipt, sqlx::Error>> + Send>;

/// Boxes a unit of work (helps the compiler see the lifetimes).
pub fn work<F>(f: F) -> Work
where
    F: for<'a> FnOnce(Unit<'a>) -> BoxFuture<'a, Result<Receipt, sqlx::Error>> + Send + 'static,
{
    Box::new(f)
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

async fn run(core: Arc<Core>, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&core, batch).await;
    }
}

async fn commit_batch(core: &Core, batch: Vec<Job>) {
    let size = batch.len();
    let mut tx = match core.db.begin_write().await {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "disclosure log: cannot begin a transaction");
            for job in batch {
                let _ = job.reply.send(Err(Unavailable));
            }
            return;
        }
    };
    let mut done = Vec::with_capacity(size);
    for job in batch {
        let outcome = run_unit(core, &mut tx, job.work).await;
        match outcome {
            Ok(receipt) => done.push((job.reply, receipt)),
            Err(e) => {
                tracing::error!(error = %e, "disclosure log: a unit of work failed; it was rolled back");
                let _ = job.reply.send(Err(Unavailable));
            }
        }
    }
    match tx.commit().await {
        Ok(()) => {
            metrics::histogram!("ketenpoort_log_batch_size").record(size as f64);
            for (reply, receipt) in done {
                let _ = reply.send(Ok(receipt));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "disclosure log: commit failed; nothing was released");
            for (reply, _) in done {
                let _ = reply.send(Err(Unavailable));
            }
        }
    }
}

/// One unit under its own savepoint.
async fn run_unit(core: &Core, tx: &mut WriteTx, work: Work) -> Result<Receipt, sqlx::Error> {
    tx.conn().execute("SAVEPOINT unit").await?;
    let result = work(Unit { tx, core }).await;
    match result {
        Ok(receipt) => {
            tx.conn().execute("RELEASE SAVEPOINT unit").await?;
            Ok(receipt)
        }
        Err(e) => {
            tx.conn().execute("ROLLBACK TO SAVEPOINT unit").await?;
            tx.conn().execute("RELEASE SAVEPOINT unit").await?;
            Err(e)
        }
    }
}
