//! The disclosure log (invariants 2, 3, 4): every disclosure and every
//! refusal becomes an entry, appended inside the transaction of the change it
//! records, covered by an RFC 6962 Merkle tree and signed checkpoints.
//!
//! There is one way in: [`Ledger::commit`] runs the caller's unit of work —
//! its state changes and the entry that records them — in one database
//! transaction, and answers only once that transaction is durable
//! ([`Ledger::record`] for a bare entry). Units arriving together share one
//! transaction and one fsync (group commit, see `sequencer`). If the append
//! or the commit fails, the caller gets [`Unavailable`] and releases nothing.

mod checkpoint;
pub mod entry;
mod merkle;
mod sequencer;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use time::format_description::well_known::Rfc3339;

use crate::api::middleware::RequestContext;
use crate::auth::Principal;
use crate::keys::KeyStore;
use crate::policy::Decision;
use crate::store::ledger::{EntryRow, StoredCheckpoint};
use crate::store::{Db, WriteTx};
pub use checkpoint::LOG_KEY;
use checkpoint::NoteSigner;
pub use entry::{Actor, DecisionRecord, Entry, LogAction, Outcome};
pub use merkle::Hash;
use merkle::{Reader, leaf_hash};
pub use sequencer::{Unavailable, Work, work};

/// Proof that an entry was logged: its index and leaf hash. Sent to the
/// recipient in the `Ketenpoort-Receipt` header.
#[derive(Clone, Copy, Debug)]
pub struct Receipt {
    pub index: u64,
    pub leaf_hash: Hash,
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
    pub trace_id: String,
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
}

impl Draft {
    /// A draft for a request of `principal`, received by its own partner
    /// unless [`Draft::recipient`] says otherwise.
    pub fn new(ctx: &RequestContext, principal: &Principal, action: LogAction) -> Self {
        Self {
            request_id: ctx.id.to_string(),
            trace_id: ctx.trace_id.clone(),
            actor: Actor {
                partner: principal.partner.id.clone(),
                role: principal.role.clone(),
                user: principal.user.clone(),
            },
            recipient: Some(principal.partner.id.clone()),
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
}

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
}

impl Ledger {
    /// Opens the log, creating its head and signing key on first use. The
    /// origin is fixed when the log is created; a different configured
    /// origin later is refused rather than silently forking the log.
    pub async fn open(db: Db, keys: &KeyStore, origin: &str) -> anyhow::Result<Self> {
        keys.ensure_ed25519(LOG_KEY)?;
        let signer = NoteSigner::new(origin, keys.ed25519(LOG_KEY)?.key_pair())?;
        let (stored_origin, stored_key) = db.init_log_head(origin, &signer.verifier_key()).await?;
        anyhow::ensure!(
            stored_origin == origin && stored_key == signer.verifier_key(),
            "this database's log was created with origin {stored_origin:?} and key {stored_key:?}; \
             configure log.origin and the log signing key accordingly"
        );
        let core = Arc::new(Core {
            db,
            verifier_key: signer.verifier_key(),
            signer,
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
    pub async fn commit(&self, work: Work) -> Result<Receipt, Unavailable> {
        sequencer::submit(&self.queue, work).await
    }

    /// Appends a bare entry (a read, a refusal: nothing else changes).
    pub async fn record(&self, draft: Draft) -> Result<Receipt, Unavailable> {
        self.commit(work(move |mut unit| {
            Box::pin(async move { unit.append(draft).await })
        }))
        .await
    }
}

impl Core {
    /// Appends `draft` inside `tx`. The entry exists once `tx` commits; if
    /// `tx` is rolled back, so is the entry (and no index is used up).
    async fn append(&self, tx: &mut WriteTx, draft: Draft) -> Result<Receipt, sqlx::Error> {
        let index = tx.lock_log_head().await?;
        let now = time::OffsetDateTime::now_utc();
        let mut subjects = draft.subjects;
        subjects.sort();
        subjects.dedup();
        let mut fields = draft.fields;
        fields.sort();
        fields.dedup();
        let entry = Entry {
            v: entry::VERSION,
            index,
            time: now
                .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
                .expect("ms")
                .format(&Rfc3339)
                .expect("rfc3339"),
            request_id: draft.request_id,
            trace_id: draft.trace_id,
            actor: draft.actor,
            recipient: draft.recipient,
            action: draft.action,
            purpose: draft.purpose,
            legal_basis: draft.legal_basis,
            resources: draft.resources,
            subjects,
            fields,
            decision: draft.decision,
            policy_revision: draft.policy_revision,
            outcome: draft.outcome,
        };
        let leaf = entry.encode();
        let hash = leaf_hash(&leaf);
        let rec = Reader::recording();
        let _ = tlog_tiles::stored_hashes_for_record_hash(index, hash, &rec);
        let fetched = tx.log_hashes(&rec.recorded()).await?;
        let hashes =
            tlog_tiles::stored_hashes_for_record_hash(index, hash, &Reader::Fetched(fetched))
                .map_err(|e| sqlx::Error::Protocol(format!("log tree: {e}")))?;
        let row = EntryRow {
            idx: index,
            leaf: &leaf,
            leaf_hash: hash,
            ts: (now.unix_timestamp_nanos() / 1_000_000) as i64,
            action: entry.action.as_str(),
            actor_partner: &entry.actor.partner,
            actor_role: &entry.actor.role,
            recipient: entry.recipient.as_deref(),
            purpose: entry.purpose.as_deref(),
            outcome: entry.outcome.as_str(),
            subjects: &entry.subjects,
        };
        tx.insert_log_entry(&row, tlog_tiles::stored_hash_index(0, index), &hashes)
            .await?;
        metrics::counter!("ketenpoort_log_appends_total", "action" => entry.action.as_str())
            .increment(1);
        Ok(Receipt {
            index,
            leaf_hash: hash,
        })
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
