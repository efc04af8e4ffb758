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

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// Why a unit of work was not committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// The log could not be written: see [`Unavailable`].
    Unavailable,
    /// The unit broke a uniqueness rule (a natural key): what it tried was
    /// done already, by this request's twin. Rolled back, nothing changed.
    Conflict,
    /// COMMIT was sent but not answered in time: the work may or may not
    /// have been committed. The caller must not say either.
    Unknown,
}

impl From<Unavailable> for Failed {
    fn from(_: Unavailable) -> Self {
        Self::Unavailable
    }
}

impl From<Failed> for crate::problem::Problem {
    fn from(f: Failed) -> Self {
        match f {
            Failed::Unavailable => Unavailable.into(),
            Failed::Conflict => Self::new(
                http::StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                "this was done already (by a concurrent request); nothing was changed",
            ),
            Failed::Unknown => Self::unavailable(
                "the database did not confirm the disclosure log's commit in time: the request may \
                 have taken effect; look its request id up in the log before retrying",
            ),
        }
    }
}

/// A request's say over its queued log work. A request that runs out of
/// time cancels the work it queued — possible only while no batch has
/// taken any of it; once a batch has, the request waits for the outcome,
/// so "nothing was disclosed" is said only when it is true.
#[derive(Clone, Default)]
struct Claim(Arc<AtomicU8>);

const OPEN: u8 = 0;
const COMMITTING: u8 = 1;
const CANCELLED: u8 = 2;

tokio::task_local! {
    static CLAIM: Claim;
}

impl Claim {
    /// The batch takes the work: false if the request gave up first.
    fn take(&self) -> bool {
        match self
            .0
            .compare_exchange(OPEN, COMMITTING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == COMMITTING,
        }
    }

    /// The request gives up: false if a batch already took some of its work.
    fn cancel(&self) -> bool {
        self.0
            .compare_exchange(OPEN, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Runs `request` with a deadline. `None`: the deadline passed and none of
/// the request's log work was committed or will be (queued work is dropped
/// unrun). If a batch took some of its work before the deadline, the
/// request runs to its end (the batch is bounded by the database's own
/// timeouts) and its real answer is returned.
pub async fn within_deadline<T>(deadline: Duration, request: impl Future<Output = T>) -> Option<T> {
    let claim = Claim::default();
    let request = CLAIM.scope(claim.clone(), request);
    tokio::pin!(request);
    // The request first: one that is done on its first poll (most of
    // them) never puts its timer in the runtime's timer wheel.
    tokio::select! {
        biased;
        done = &mut request => return Some(done),
        () = tokio::time::sleep(deadline) => {}
    }
    if claim.cancel() {
        return None;
    }
    tracing::warn!(
        "a request ran past its deadline while its log work was committing; waiting for the outcome"
    );
    Some(request.await)
}

/// Whether the log can be written, as the last batch (or probe) found it:
/// `None` when it can, or why it cannot (a cause class, never an error's text).
#[derive(Default)]
pub(super) struct Health(Mutex<Option<&'static str>>);

impl Health {
    pub(super) fn get(&self) -> Option<&'static str> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, state: Option<&'static str>) {
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if h.is_none() && state.is_some() {
            tracing::error!(
                reason = state,
                "disclosure log: not writable; /readyz answers 503 until a write succeeds"
            );
        } else if h.is_some() && state.is_none() {
            tracing::info!("disclosure log: writable again");
        }
        *h = state;
    }
}

/// The class of a failed write, for `/readyz` and the operator: no error
/// text (which may name hosts or values), only what kind of fault it is.
fn cause(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            if code == "13" || code == "53100" || d.message().contains("disk is full") {
                "the database's disk is full"
            } else if matches!(&*code, "57014" | "55P03" | "25P03" | "5" | "6" | "517") {
                "the database did not answer in time (a lock held too long)"
            } else {
                "the database refused the write"
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => "the database does not answer",
        _ => "the database refused the write",
    }
}

/// `step`, failing with a timeout once `deadline` passes (the future is
/// dropped; the caller drops the transaction and its connection).
async fn bounded<T>(
    deadline: Option<tokio::time::Instant>,
    step: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    match deadline {
        None => step.await,
        Some(at) => tokio::time::timeout_at(at, step).await.unwrap_or_else(|_| {
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the database did not answer within the batch's deadline",
            )))
        }),
    }
}

/// Extra time COMMIT gets past the batch's deadline.
const COMMIT_GRACE: Duration = Duration::from_secs(5);

fn is_conflict(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
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

pub(super) type UnitFn =
    Box<dyn for<'a> FnOnce(Unit<'a>) -> BoxFuture<'a, Result<Receipt, sqlx::Error>> + Send>;

/// What the log commits: a bare entry, or a unit of work with state changes.
pub enum Work {
    Entry(Box<Draft>),
    Unit(UnitFn),
}

/// What a job answers.
enum Reply {
    Receipt(oneshot::Sender<Result<Receipt, Failed>>),
    /// A write probe (readiness): it writes the log head without changing it.
    Probe(oneshot::Sender<Result<(), Failed>>),
}

impl Reply {
    fn fail(self, f: Failed) {
        match self {
            Self::Receipt(r) => drop(r.send(Err(f))),
            Self::Probe(r) => drop(r.send(Err(f))),
        }
    }
}

/// A unit of work (the helper lets the compiler see the lifetimes).
pub fn work<F>(f: F) -> Work
where
    F: for<'a> FnOnce(Unit<'a>) -> BoxFuture<'a, Result<Receipt, sqlx::Error>> + Send + 'static,
{
    Work::Unit(Box::new(f))
}

pub struct Job {
    work: Option<Work>,
    reply: Reply,
    /// The claim of the request that queued it, if a request did.
    claim: Option<Claim>,
}

pub(super) fn start(core: Arc<Core>) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
    tokio::spawn(run(core, rx));
    tx
}

pub(super) async fn submit(queue: &mpsc::Sender<Job>, work: Work) -> Result<Receipt, Failed> {
    let (reply, answer) = oneshot::channel();
    let claim = CLAIM.try_with(Claim::clone).ok();
    queue
        .send(Job {
            work: Some(work),
            reply: Reply::Receipt(reply),
            claim,
        })
        .await
        .map_err(|_| Failed::Unavailable)?;
    answer.await.unwrap_or(Err(Failed::Unavailable))
}

/// Writes the log head in a batch of its own kind: `Ok` if the log can be
/// written now.
pub(super) async fn probe(queue: &mpsc::Sender<Job>) -> Result<(), Failed> {
    let (reply, answer) = oneshot::channel();
    queue
        .send(Job {
            work: None,
            reply: Reply::Probe(reply),
            claim: None,
        })
        .await
        .map_err(|_| Failed::Unavailable)?;
    answer.await.unwrap_or(Err(Failed::Unavailable))
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
        let idempotent_request = (draft.holds_idempotency_key
            && matches!(draft.outcome, super::Outcome::Disclosed))
        .then(|| draft.request_id.clone());
        let entry = draft.into_entry(index, now, &self.refs);
        let (leaf, projection) = entry.leaf();
        let hash = leaf_hash(&leaf);
        let hashes = self.tree.push(hash);
        let ts = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let count = super::counts::key_of(
            ts,
            entry.action.as_str(),
            &entry.actor.partner,
            entry.recipient.as_deref(),
            entry.purpose.as_deref(),
            entry.outcome,
            entry.decision.reasons.first().map(String::as_str),
        );
        self.rows.push(EntryRow {
            idx: index,
            leaf,
            leaf_hash: hash,
            ts,
            action: entry.action.as_str(),
            actor_partner: entry.actor.partner,
            actor_role: entry.actor.role,
            actor_user: entry.actor.user.map(|u| u.as_str().to_owned()),
            recipient: entry.recipient,
            purpose: entry.purpose,
            outcome: entry.outcome.as_str(),
            count,
            subjects: entry.subjects,
            projection,
            hashes,
            idempotent_request,
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

/// What one job of a batch came to, while the batch's transaction is fine.
enum Step {
    Appended(Receipt),
    Probed,
    /// The unit failed and was rolled back to its savepoint.
    Rejected(sqlx::Error),
}

/// Runs one batch; returns the new right edge if it committed. Whatever
/// fails, the batch's transaction is dropped with its connection (see
/// `WriteTx`), so the next batch starts clean.
async fn commit_batch(
    core: &Core,
    edge: Option<CompactRange>,
    batch: Vec<Job>,
) -> Option<CompactRange> {
    // Work whose request gave up before now is dropped unrun.
    let batch: Vec<Job> = batch
        .into_iter()
        .filter(|job| job.claim.as_ref().is_none_or(Claim::take))
        .collect();
    if batch.is_empty() {
        return edge;
    }
    let size = batch.len();
    // A database that stops answering (a connection a firewall dropped)
    // must not hold this instance's log forever.
    let deadline = core
        .db
        .batch_deadline()
        .map(|d| tokio::time::Instant::now() + d);
    let (mut tx, tree) = match bounded(deadline, begin(core, edge)).await {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error = %e, "disclosure log: cannot begin a batch");
            core.health.set(Some(cause(&e)));
            for job in batch {
                job.reply.fail(Failed::Unavailable);
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
    let mut probes = Vec::new();
    let mut fatal = None;
    let mut jobs = batch.into_iter();
    for job in jobs.by_ref() {
        let outcome = match job.work {
            Some(Work::Entry(draft)) => Ok(Step::Appended(log.append(*draft))),
            Some(Work::Unit(f)) => bounded(deadline, run_unit(&mut tx, &mut log, f)).await,
            None => bounded(deadline, tx.touch_log_head())
                .await
                .map(|()| Step::Probed),
        };
        match (outcome, job.reply) {
            (Ok(Step::Appended(receipt)), Reply::Receipt(reply)) => done.push((reply, receipt)),
            (Ok(Step::Probed), Reply::Probe(reply)) => probes.push(reply),
            (Ok(Step::Rejected(e)), reply) => {
                let failed = if is_conflict(&e) {
                    tracing::info!(
                        "disclosure log: a unit of work conflicted (unique key); it was rolled back"
                    );
                    Failed::Conflict
                } else {
                    tracing::error!(error = %e, "disclosure log: a unit of work failed; it was rolled back");
                    // Perhaps the disk is full: readiness probes until a write succeeds.
                    core.health.set(Some(cause(&e)));
                    Failed::Unavailable
                };
                reply.fail(failed);
            }
            (Ok(_), reply) => reply.fail(Failed::Unavailable),
            (Err(e), reply) => {
                reply.fail(Failed::Unavailable);
                fatal = Some(e);
                break;
            }
        }
    }
    let written = match fatal {
        // The transaction is in an unknown state: nothing of it commits.
        Some(e) => Err(e),
        None => bounded(deadline, tx.insert_log_entries(&log.rows)).await,
    };
    // COMMIT is the one step whose failure leaves the outcome open: if it
    // does not answer in time, the batch may or may not have committed,
    // and the callers are told exactly that.
    let written = match written {
        Err(e) => Err(e),
        Ok(()) => match deadline {
            None => tx.commit().await,
            Some(at) => match tokio::time::timeout_at(at + COMMIT_GRACE, tx.commit()).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::error!(
                        "disclosure log: COMMIT did not answer in time; the batch's outcome is unknown"
                    );
                    core.health.set(Some("the database did not answer in time"));
                    for (reply, _) in done {
                        let _ = reply.send(Err(Failed::Unknown));
                    }
                    for reply in probes {
                        let _ = reply.send(Err(Failed::Unknown));
                    }
                    return None;
                }
            },
        },
    };
    match written {
        Ok(()) => {
            metrics::histogram!("ketenpoort_log_batch_size").record(log.rows.len() as f64);
            for row in &log.rows {
                metrics::counter!("ketenpoort_log_appends_total", "action" => row.action)
                    .increment(1);
            }
            if !log.rows.is_empty() || !probes.is_empty() {
                core.health.set(None);
            }
            for (reply, receipt) in done {
                let _ = reply.send(Ok(receipt));
            }
            for reply in probes {
                let _ = reply.send(Ok(()));
            }
            Some(log.tree)
        }
        Err(e) => {
            tracing::error!(error = %e, "disclosure log: writing the batch failed; nothing was released");
            core.health.set(Some(cause(&e)));
            for (reply, _) in done {
                let _ = reply.send(Err(Failed::Unavailable));
            }
            for reply in probes {
                let _ = reply.send(Err(Failed::Unavailable));
            }
            for job in jobs {
                job.reply.fail(Failed::Unavailable);
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
    tx.bound_statements(core.db.bounds().statement_timeout_secs)
        .await?;
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
/// An error is the transaction's (the batch cannot go on); a unit's own
/// failure is a [`Step::Rejected`] (rolled back; the batch goes on).
async fn run_unit(tx: &mut WriteTx, log: &mut Pending, f: UnitFn) -> Result<Step, sqlx::Error> {
    tx.savepoint().await?;
    let mark = (log.rows.len(), log.tree.clone());
    let result = f(Unit { tx, log }).await;
    match result {
        Ok(receipt) => {
            tx.release_savepoint().await?;
            Ok(Step::Appended(receipt))
        }
        Err(e) => {
            log.rows.truncate(mark.0);
            log.tree = mark.1;
            tx.rollback_to_savepoint().await?;
            Ok(Step::Rejected(e))
        }
    }
}
