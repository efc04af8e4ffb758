//! The disclosure log (invariants 2, 3, 4): every disclosure and every
//! refusal becomes an entry, appended inside the transaction of the change it
//! records, covered by an RFC 6962 Merkle tree and signed checkpoints.
//!
//! There is one way in: [`Ledger::commit`] runs the caller's unit of work —
//! its state changes and the entry that records them — in one database
//! transaction, and answers only once that transaction is durable
//! ([`Ledger::log`] for a bare entry). Units arriving together share one
//! transaction and one fsync (group commit, see `sequencer`). If the append
//! or the commit fails, the caller gets [`Unavailable`] and releases nothing.

mod checkpoint;
mod compact;
pub mod counts;
mod disclosed;
pub mod entry;
mod leaf;
mod merkle;
mod publish;
mod refusal;
mod sequencer;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use time::format_description::well_known::Rfc3339;

use crate::crypto::Pseudonymizer;
use crate::keys::KeyStore;
use crate::policy::Decision;
use crate::request::RequestContext;
use crate::store::Db;
use crate::store::ledger::StoredCheckpoint;
use checkpoint::NoteSigner;
pub use checkpoint::{LOG_KEY, key_name, open as open_checkpoint};
pub use disclosed::Disclosed;
pub use entry::{Actor, DecisionRecord, Entry, LogAction, Outcome};
pub use merkle::Hash;
use merkle::Reader;
pub use refusal::{RefusalSite, log_refusal};
pub use sequencer::{Failed, Unavailable, Unit, Work, within_deadline, work};

/// Proof that an entry was logged: its index and leaf hash. Sent to the
/// recipient in the `Ketenpoort-Receipt` header. Only the log makes one
/// (its fields are private), and only a receipt turns a granted answer
/// into a response ([`Receipt::disclose`]): invariant 2 by type.
#[derive(Clone, Copy, Debug)]
pub struct Receipt {
    index: u64,
    leaf_hash: Hash,
}

pub const RECEIPT_HEADER: &str = "ketenpoort-receipt";

impl Receipt {
    /// `index=<n>, leaf-hash=:<base64>:` (an RFC 8941 dictionary).
    pub fn header_value(&self) -> String {
        format!(
            "index={}, leaf-hash=:{}:",
            self.index,
            base64::engine::general_purpose::STANDARD.encode(self.leaf_hash.0)
        )
    }
}

/// An entry before the log gives it an index and a time.
pub struct Draft {
    pub request_id: String,
    /// The caller's trace id: the log keeps only its reference.
    trace_id: String,
    pub actor: Actor,
    pub recipient: Option<String>,
    pub action: LogAction,
    pub purpose: Option<String>,
    pub legal_basis: Option<String>,
    pub resources: Vec<String>,
    pub subjects: Vec<String>,
    pub fields: Vec<String>,
    pub decision: DecisionRecord,
    pub policy_revision: Option<String>,
    pub outcome: Outcome,
    /// The request holds an `Idempotency-Key` (see `RequestContext`).
    holds_idempotency_key: bool,
}

impl Draft {
    /// A draft for a request of `actor`, received by its own partner
    /// unless [`Draft::recipient`] says otherwise.
    pub fn new(ctx: &RequestContext, actor: Actor, action: LogAction) -> Self {
        Self {
            request_id: ctx.id.to_string(),
            trace_id: ctx.trace_id.clone(),
            recipient: Some(actor.partner.clone()),
            actor,
            action,
            purpose: None,
            legal_basis: None,
            resources: Vec::new(),
            subjects: Vec::new(),
            fields: Vec::new(),
            decision: DecisionRecord {
                mode: "none".into(),
                reasons: Vec::new(),
            },
            policy_revision: None,
            outcome: Outcome::Disclosed,
            holds_idempotency_key: ctx.holds_idempotency_key,
        }
    }

    pub fn recipient(mut self, partner: Option<&str>) -> Self {
        self.recipient = partner.map(str::to_owned);
        self
    }

    /// Records the purpose, the decision that allowed or refused the request
    /// and the fields it disclosed; a refusal makes the outcome `denied`.
    pub fn decided(mut self, purpose: Option<&str>, d: &Decision) -> Self {
        self.purpose = purpose.map(str::to_owned);
        self.legal_basis = d.legal_basis.clone();
        self.fields = d.fields.clone();
        self.decision = DecisionRecord {
            mode: serde_json::to_value(d.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            reasons: d.reasons.clone(),
        };
        self.policy_revision = Some(d.revision.clone());
        if !d.allow {
            self.outcome = Outcome::Denied;
            self.fields.clear();
        }
        self
    }

    pub fn resources(mut self, r: impl IntoIterator<Item = String>) -> Self {
        self.resources.extend(r);
        self
    }

    pub fn subjects(mut self, s: impl IntoIterator<Item = String>) -> Self {
        self.subjects.extend(s);
        self
    }

    pub fn outcome(mut self, o: Outcome) -> Self {
        self.outcome = o;
        self
    }

    /// The entry at `index`, stamped `now` (milliseconds, UTC); subjects and
    /// fields sorted and without repeats.
    fn into_entry(self, index: u64, now: time::OffsetDateTime, refs: &Pseudonymizer) -> Entry {
        let mut subjects = self.subjects;
        subjects.sort();
        subjects.dedup();
        let mut fields = self.fields;
        fields.sort();
        fields.dedup();
        let ms = now
            .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
            .expect("milliseconds are valid nanoseconds");
        Entry {
            v: entry::VERSION,
            index,
            time: ms.format(&Rfc3339).expect("RFC 3339"),
            request_id: self.request_id,
            trace_id: refs.trace_ref(&self.trace_id),
            actor: self.actor,
            recipient: self.recipient,
            action: self.action,
            purpose: self.purpose,
            legal_basis: self.legal_basis,
            resources: self.resources,
            subjects,
            fields,
            decision: self.decision,
            policy_revision: self.policy_revision,
            outcome: self.outcome,
        }
    }
}

/// On SQLite, after a failed write, the instance is ready again only with
/// this much free on the database's file system (the WAL grows to about
/// 4 MiB between checkpoints).
const MIN_FREE_BYTES: u64 = 8 << 20;

#[derive(Clone)]
pub struct Ledger {
    core: Arc<Core>,
    queue: tokio::sync::mpsc::Sender<sequencer::Job>,
}

/// What appending and proving need; shared by the handle and the sequencer.
struct Core {
    db: Db,
    signer: NoteSigner,
    verifier_key: String,
    /// Makes the references of what callers chose (trace ids).
    refs: Pseudonymizer,
    /// Whether the last batch could write the log.
    health: sequencer::Health,
}

impl Ledger {
    /// Opens the log, creating its head and signing key on first use. The
    /// origin is fixed when the log is created; a different configured
    /// origin later is refused rather than silently forking the log.
    /// `refs` makes the references of what callers chose (trace ids).
    pub async fn open(
        db: Db,
        keys: &KeyStore,
        origin: &str,
        refs: Pseudonymizer,
    ) -> anyhow::Result<Self> {
        keys.ensure_ed25519(LOG_KEY)?;
        let signer = NoteSigner::new(origin, keys.ed25519(LOG_KEY)?.key_pair())?;
        let (stored_origin, stored_key) = db.init_log_head(origin, &signer.verifier_key()).await?;
        anyhow::ensure!(
            stored_origin == origin && stored_key == signer.verifier_key(),
            "this database's log was created with origin {stored_origin:?} and key {stored_key:?}; \
             configure log.origin and the log signing key accordingly"
        );
        counts::catch_up(&db).await?;
        let core = Arc::new(Core {
            db,
            verifier_key: signer.verifier_key(),
            signer,
            refs,
            health: sequencer::Health::default(),
        });
        Ok(Self {
            queue: sequencer::start(core.clone()),
            core,
        })
    }

    pub fn verifier_key(&self) -> &str {
        &self.core.verifier_key
    }

    /// Runs `work` in a write transaction and answers once it is durable,
    /// committed together with the other units that arrived meanwhile.
    /// A unit that breaks a uniqueness rule is [`Failed::Conflict`].
    pub async fn commit(&self, work: Work) -> Result<Receipt, Failed> {
        sequencer::submit(&self.queue, work).await
    }

    /// Appends a bare entry (a read, a refusal: nothing else changes).
    pub async fn log(&self, draft: Draft) -> Result<Receipt, Unavailable> {
        self.commit(Work::Entry(Box::new(draft)))
            .await
            .map_err(|_| Unavailable)
    }

    /// `Ok` if the log can be written; otherwise why not (a cause class,
    /// no error text). After a failed write it probes with a write of its
    /// own (bounded by `within`), so readiness returns as soon as the
    /// cause is gone, whether or not requests arrive meanwhile.
    pub async fn writable(&self, within: Duration) -> Result<(), &'static str> {
        let Some(cause) = self.core.health.get() else {
            return Ok(());
        };
        // A write of a few pages may fit where a batch does not: on SQLite
        // the file system must also have room for a batch and a checkpoint.
        if self
            .core
            .db
            .sqlite_free_bytes()
            .is_some_and(|free| free < MIN_FREE_BYTES)
        {
            return Err("the database's disk is full");
        }
        match tokio::time::timeout(within, sequencer::probe(&self.queue)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(self.core.health.get().unwrap_or(cause)),
        }
    }
}

impl Ledger {
    /// Runs a tlog computation over the stored hashes, fetching exactly the
    /// hashes it reads.
    async fn with_hashes<T>(
        &self,
        f: impl Fn(&Reader) -> Result<T, tlog_tiles::Error>,
    ) -> anyhow::Result<T> {
        let rec = Reader::recording();
        let _ = f(&rec);
        let fetched = self.core.db.log_hashes(&rec.recorded()).await?;
        Ok(f(&Reader::Fetched(fetched))?)
    }

    pub async fn size(&self) -> Result<u64, sqlx::Error> {
        self.core.db.log_size().await
    }

    pub async fn root(&self, size: u64) -> anyhow::Result<Hash> {
        self.with_hashes(|r| tlog_tiles::tree_hash(size, r)).await
    }

    /// Audit path of entry `index` in the tree of `size` entries.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> anyhow::Result<Vec<Hash>> {
        self.with_hashes(|r| tlog_tiles::prove_record(size, index, r))
            .await
    }

    /// Proof that the tree of `from` entries is a prefix of the tree of `to`.
    pub async fn consistency_proof(&self, from: u64, to: u64) -> anyhow::Result<Vec<Hash>> {
        self.with_hashes(|r| tlog_tiles::prove_tree(to, from, r))
            .await
    }

    /// The newest checkpoint, signing one for the current size if the tree
    /// grew since (or none exists). Checkpoints are computed from the one
    /// append-only tree, so any two are consistent.
    pub async fn checkpoint(&self) -> anyhow::Result<StoredCheckpoint> {
        let size = self.size().await?;
        if let Some(cp) = self.core.db.latest_checkpoint().await?
            && cp.size >= size
        {
            return Ok(cp);
        }
        let root = self.root(size).await?;
        let note = self.core.signer.checkpoint(size, root)?;
        self.core.db.insert_checkpoint(size, &root, &note).await?;
        Ok(self
            .core
            .db
            .latest_checkpoint()
            .await?
            .expect("just inserted"))
    }

    /// The newest stored checkpoint (the log's note, without cosignatures).
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, sqlx::Error> {
        self.core.db.latest_checkpoint().await
    }

    /// Keeps `witness`'s cosignature line of the checkpoint of `size`.
    pub async fn store_cosignature(
        &self,
        size: u64,
        witness: &str,
        line: &str,
    ) -> Result<(), sqlx::Error> {
        self.core.db.insert_cosignature(size, witness, line).await
    }

    /// The largest checkpoint size `witness` cosigned, by the stored lines.
    pub async fn cosigned_size(&self, witness: &str) -> Result<Option<u64>, sqlx::Error> {
        self.core.db.cosigned_size(witness).await
    }

    /// `cp`'s note with the stored cosignature lines appended (C2SP
    /// tlog-cosignature: more signature lines of the same note).
    pub async fn witnessed(
        &self,
        mut cp: StoredCheckpoint,
    ) -> Result<StoredCheckpoint, sqlx::Error> {
        for line in self.core.db.cosignatures(cp.size).await? {
            cp.note.push_str(&line);
        }
        Ok(cp)
    }

    /// Background task: a checkpoint whenever `every` entries accumulated or
    /// `interval` passed with growth.
    pub async fn checkpointer(self, every: u64, interval: Duration) {
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(1).min(interval)).await;
            let (Ok(size), Ok(latest)) =
                (self.size().await, self.core.db.latest_checkpoint().await)
            else {
                continue;
            };
            let signed = latest.map_or(0, |c| c.size);
            let due =
                size > signed && (size - signed >= every.max(1) || last.elapsed() >= interval);
            if due {
                match self.checkpoint().await {
                    Ok(cp) => tracing::debug!(size = cp.size, "checkpoint signed"),
                    Err(e) => tracing::error!(error = %e, "checkpoint failed"),
                }
                last = tokio::time::Instant::now();
            }
        }
    }
}
