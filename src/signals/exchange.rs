//! What submitting and referring a signal change, besides the decision: the
//! body sealed under a new data key (invariant 7), the record key of the
//! phenomenon tables, the egress guard's fingerprints of every stored value
//! (invariant 1, layer 3), the recipient's inbox copy or the signal's
//! phenomenon contribution, and the log entry — all in one transaction
//! with the entry (invariant 2).

use serde_json::Value;
use uuid::Uuid;

use super::{Facts, Vault};
use crate::boundary::{self, Delivery, EgressGuard};
use crate::ledger::{Draft, Failed, Ledger, Receipt, work};
use crate::model::signal::{CorrectionRequest, Transition};
use crate::phenomena::{self, RecordKey};
use crate::problem::Problem;
use crate::projection::Projection;
use crate::store::signals::{Referral, StoredSignal};

/// The services a signal's state changes go through.
pub struct Desk<'a> {
    pub vault: &'a Vault,
    pub egress: &'a EgressGuard,
    pub ledger: &'a Ledger,
}

/// What a referral delivered: the inbox item of a member's copy, if any.
pub struct Referred {
    pub receipt: Receipt,
    pub inbox_item: Option<String>,
}

impl Desk<'_> {
    /// Stores a new signal — sealed body, record key, fingerprints of its
    /// values (`subjects` are its persons' pseudonyms) — with `draft`.
    pub async fn intake(
        &self,
        facts: &Facts,
        body: &Value,
        subjects: &[String],
        draft: Draft,
    ) -> Result<Receipt, Problem> {
        let sealed = self.vault.seal_new(&facts.id, body);
        let known = boundary::fingerprint::of_signal(&facts.id, body, subjects);
        let fingerprints = self.egress.fingerprints(&known);
        let stored = facts.clone();
        let receipt = self
            .ledger
            .commit(work(move |mut unit| {
                Box::pin(async move {
                    let tx = unit.tx();
                    tx.insert_signal(&stored, &sealed.body, &sealed.kek_id, &sealed.wrapped)
                        .await?;
                    tx.insert_record_key(&stored.id, RecordKey::generate().stored())
                        .await?;
                    tx.insert_fingerprints(&stored.id, &fingerprints).await?;
                    Ok(unit.append(draft))
                })
            }))
            .await?;
        Ok(receipt)
    }

    /// Records `referral` of `stored` (whose body is `body`) and delivers
    /// what the boundary's rule says: a copy of `disclosed` in the
    /// recipient's inbox, sealed under the signal's data key, or only a
    /// phenomenon contribution. The entry (`draft`) names the signal, the
    /// referral and the inbox item.
    pub async fn refer(
        &self,
        stored: &StoredSignal,
        body: &Value,
        referral: Referral,
        disclosed: &Projection,
        delivery: Delivery,
        draft: Draft,
    ) -> Result<Referred, Problem> {
        let mut resources = vec![
            format!("signal:{}", referral.signal_id),
            format!("referral:{}", referral.id),
        ];
        let (contribution, copy) = match delivery {
            Delivery::PhenomenonCount => (Some(phenomena::Contribution::of(body)?.row()), None),
            Delivery::InboxCopy => {
                let item = Uuid::now_v7().to_string();
                let sealed = disclosed.sealed(&self.vault.key(stored)?, item.as_bytes());
                resources.push(format!("inbox:{item}"));
                (None, Some((item, sealed)))
            }
        };
        let inbox_item = copy.as_ref().map(|(item, _)| item.clone());
        let ids: Vec<_> = [Some(&referral.id), inbox_item.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|i| boundary::fingerprint::id(i))
            .collect();
        let fingerprints = self.egress.fingerprints(&ids);
        let draft = draft.resources(resources);
        let receipt = self
            .ledger
            .commit(work(move |mut unit| {
                Box::pin(async move {
                    let r = &referral;
                    unit.tx().insert_referral(r).await?;
                    if let Some(c) = &contribution {
                        phenomena::contribute(&mut unit, &r.signal_id, c).await?;
                    }
                    let tx = unit.tx();
                    if let Some((item, sealed)) = &copy {
                        tx.insert_inbox_item(item, r, sealed).await?;
                    }
                    tx.insert_fingerprints(&r.signal_id, &fingerprints).await?;
                    Ok(unit.append(draft))
                })
            }))
            .await
            .map_err(|f| match f {
                // The same referral, made by a concurrent request.
                Failed::Conflict => already_referred(),
                f => Problem::from(f),
            })?;
        Ok(Referred {
            receipt,
            inbox_item,
        })
    }
}

impl Desk<'_> {
    /// Stores `body`, a new version of `stored` whose facts are `facts`
    /// (`stored.facts.revised`), under the signal's data key; the version it
    /// replaces is kept as it was sealed. The egress guard learns the new
    /// values (`subjects`: the persons' pseudonyms). A concurrent change of
    /// the same version is 412: nothing is stored.
    pub async fn revise(
        &self,
        stored: &StoredSignal,
        facts: Facts,
        body: &Value,
        subjects: &[String],
        draft: Draft,
    ) -> Result<Receipt, Problem> {
        let sealed = Vault::seal_with(&self.vault.key(stored)?, &facts.id, body);
        let known = boundary::fingerprint::of_signal(&facts.id, body, subjects);
        let fingerprints = self.egress.fingerprints(&known);
        let previous = stored.body.clone();
        self.ledger
            .commit(work(move |mut unit| {
                Box::pin(async move {
                    let tx = unit.tx();
                    tx.revise_signal(&facts, &previous, &sealed).await?;
                    tx.insert_fingerprints(&facts.id, &fingerprints).await?;
                    Ok(unit.append(draft))
                })
            }))
            .await
            .map_err(|f| match f {
                Failed::Conflict => stale_version(),
                f => Problem::from(f),
            })
    }

    /// Stores a reporter's correction request, its body sealed under the
    /// signal's data key. The egress guard learns the values it proposes
    /// (`proposed`: the signal as it would read; `subjects`: the persons'
    /// pseudonyms), as it does for every personal value ketenpoort holds.
    pub async fn request_correction(
        &self,
        stored: &StoredSignal,
        mut request: CorrectionRequest,
        content: &Value,
        proposed: &Value,
        subjects: &[String],
        draft: Draft,
    ) -> Result<Receipt, Problem> {
        let aad = CorrectionRequest::aad(&stored.facts.id, &request.id);
        request.body = Vault::seal_with(&self.vault.key(stored)?, &aad, content);
        let known = boundary::fingerprint::of_signal(&stored.facts.id, proposed, subjects);
        let fingerprints = self.egress.fingerprints(&known);
        self.ledger
            .commit(work(move |mut unit| {
                Box::pin(async move {
                    let tx = unit.tx();
                    tx.insert_correction_request(&request).await?;
                    tx.insert_fingerprints(&request.signal_id, &fingerprints)
                        .await?;
                    Ok(unit.append(draft))
                })
            }))
            .await
            .map_err(Problem::from)
    }

    /// Moves `signal_id`'s status (`t`, numbered after the history the
    /// caller saw). A concurrent move from the same state is 409.
    pub async fn transition(
        &self,
        signal_id: &str,
        t: Transition,
        draft: Draft,
    ) -> Result<Receipt, Problem> {
        let id = signal_id.to_owned();
        self.ledger
            .commit(work(move |mut unit| {
                Box::pin(async move {
                    unit.tx().insert_transition(&id, &t).await?;
                    Ok(unit.append(draft))
                })
            }))
            .await
            .map_err(|f| match f {
                Failed::Conflict => Problem::new(
                    http::StatusCode::CONFLICT,
                    "illegal-transition",
                    "Illegal transition",
                    "the signal's status changed meanwhile; read it again",
                )
                .code("transition-not-allowed"),
                f => Problem::from(f),
            })
    }

    /// Records the recipient's feedback on its referral of `signal_id`
    /// for `purpose`.
    pub async fn feedback(
        &self,
        signal_id: &str,
        recipient: &str,
        purpose: &str,
        code: &str,
        draft: Draft,
    ) -> Result<Receipt, Problem> {
        let (id, recipient, purpose, code) = (
            signal_id.to_owned(),
            recipient.to_owned(),
            purpose.to_owned(),
            code.to_owned(),
        );
        let receipt = self
            .ledger
            .commit(work(move |mut unit| {
                Box::pin(async move {
                    unit.tx()
                        .set_feedback(&id, &recipient, &purpose, &code)
                        .await?;
                    Ok(unit.append(draft))
                })
            }))
            .await?;
        Ok(receipt)
    }
}

/// 412: the version the change was made against is no longer current.
pub fn stale_version() -> Problem {
    Problem::new(
        http::StatusCode::PRECONDITION_FAILED,
        "stale-version",
        "Stale version",
        "the signal changed since the version named in If-Match; nothing was stored",
    )
}

/// 409: the signal was referred to this recipient for this purpose before.
pub fn already_referred() -> Problem {
    Problem::new(
        http::StatusCode::CONFLICT,
        "already-referred",
        "Already referred",
        "this signal was already referred to this recipient for this purpose",
    )
}
