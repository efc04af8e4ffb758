//! The gateway's side of witnessing: each configured witness
//! (`[[log.witnesses]]`) gets every new checkpoint, with a consistency proof
//! from the last one it cosigned, from a task of its own — never on a
//! request's path: a witness that is down, slow or answers garbage leaves
//! the checkpoint with fewer cosignatures, a warning and a metric, and the
//! log keeps working. A witness that refuses a checkpoint as inconsistent
//! with what it saw (a fork, a rolled-back log) raises an error log and
//! `ketenpoort_witness_refusals_total`: that is the attack witnesses exist
//! to catch.
//!
//! Metrics, per witness (its configured name): `ketenpoort_witness_cosigned_size`
//! (the size it last cosigned), `ketenpoort_witness_lag_entries` (the newest
//! checkpoint's size minus that), `ketenpoort_witness_failures_total`,
//! `ketenpoort_witness_refusals_total`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::{SIZE_CONTENT_TYPE, WitnessKey};
use crate::config::WitnessEndpoint;
use crate::ledger::Ledger;
use crate::store::ledger::StoredCheckpoint;

/// How long one submission may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How often a witness's task looks for a new checkpoint.
const POLL: Duration = Duration::from_millis(500);
/// The longest wait between attempts after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

struct Endpoint {
    key: WitnessKey,
    url: String,
    client: reqwest::Client,
}

/// What one `add-checkpoint` call gave.
enum Outcome {
    /// A valid cosignature line of the witness.
    Cosigned(String),
    /// 409: the witness's size.
    Conflict(u64),
    /// 409 at the same size, or 422: the witness holds another history.
    Refused,
    /// Down, slow, another status, or garbage.
    Failed(String),
}

/// Starts one task per configured witness.
pub fn start(ledger: &Ledger, witnesses: &[WitnessEndpoint]) -> anyhow::Result<()> {
    for w in witnesses {
        let key = WitnessKey::parse(&w.key)
            .with_context(|| format!("log.witnesses: the key of {}", w.url))?;
        if let Some(name) = &w.name {
            anyhow::ensure!(
                *name == key.name,
                "log.witnesses: name {name:?} is not the name in its key ({:?})",
                key.name
            );
        }
        let endpoint = Endpoint {
            url: format!("{}/add-checkpoint", w.url.trim_end_matches('/')),
            client: client(w.ca.as_deref())?,
            key,
        };
        tokio::spawn(run(ledger.clone(), Arc::new(endpoint)));
    }
    Ok(())
}

/// An HTTP client that trusts `ca` (the witness's certificate or its CA).
fn client(ca: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        for c in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("log.witnesses: reading {}", ca.display()))?
        {
            roots.add(c?)?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()?)
}

async fn run(ledger: Ledger, w: Arc<Endpoint>) {
    let name = w.key.name.clone();
    // The witness's size as far as we know; a 409 corrects it.
    let mut known = 0u64;
    let mut cosigned = None::<u64>;
    let mut backoff = Duration::ZERO;
    loop {
        tokio::time::sleep(POLL.max(backoff)).await;
        let Ok(Some(cp)) = ledger.latest_checkpoint().await else {
            continue;
        };
        if cosigned.is_none() {
            cosigned = ledger.cosigned_size(&name).await.ok().flatten();
        }
        metrics::gauge!("ketenpoort_witness_lag_entries", "witness" => name.clone())
            .set(cp.size.saturating_sub(cosigned.unwrap_or(0)) as f64);
        if cosigned == Some(cp.size) {
            continue;
        }
        match submit(&ledger, &w, &cp, &mut known).await {
            Ok(()) => {
                backoff = Duration::ZERO;
                cosigned = Some(cp.size);
                metrics::gauge!("ketenpoort_witness_cosigned_size", "witness" => name.clone())
                    .set(cp.size as f64);
                metrics::gauge!("ketenpoort_witness_lag_entries", "witness" => name.clone())
                    .set(0.0);
            }
            Err(refused) => {
                backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                if refused {
                    metrics::counter!("ketenpoort_witness_refusals_total", "witness" => name.clone())
                        .increment(1);
                } else {
                    metrics::counter!("ketenpoort_witness_failures_total", "witness" => name.clone())
                        .increment(1);
                }
            }
        }
    }
}

/// Hands `cp` to the witness, following its 409s; stores the cosignature.
/// `Err(true)`: the witness refused it as inconsistent with its history.
async fn submit(
    ledger: &Ledger,
    w: &Endpoint,
    cp: &StoredCheckpoint,
    known: &mut u64,
) -> Result<(), bool> {
    let name = &w.key.name;
    for _ in 0..3 {
        if *known > cp.size {
            tracing::error!(
                witness = %name, witness_size = *known, log_size = cp.size,
                "ALERT: the witness cosigned a larger checkpoint of this log than the newest one here: the log was rolled back or forked"
            );
            return Err(true);
        }
        match attempt(ledger, w, cp, *known).await {
            Outcome::Cosigned(line) => {
                if let Err(e) = ledger.store_cosignature(cp.size, name, &line).await {
                    tracing::warn!(witness = %name, error = %e, "storing a cosignature failed");
                    return Err(false);
                }
                *known = cp.size;
                tracing::debug!(witness = %name, size = cp.size, "checkpoint cosigned");
                return Ok(());
            }
            Outcome::Conflict(size) if size != *known => *known = size,
            Outcome::Conflict(_) | Outcome::Refused => {
                tracing::error!(
                    witness = %name, witness_size = *known, log_size = cp.size,
                    "ALERT: the witness refused this log's checkpoint as inconsistent with the one it cosigned: a fork (split view) or a rewritten log"
                );
                return Err(true);
            }
            Outcome::Failed(why) => {
                tracing::warn!(witness = %name, size = cp.size, reason = %why, "witness unavailable; the checkpoint has one cosignature fewer for now");
                return Err(false);
            }
        }
    }
    Err(false)
}

async fn attempt(ledger: &Ledger, w: &Endpoint, cp: &StoredCheckpoint, old: u64) -> Outcome {
    let proof = if old == 0 || old >= cp.size {
        Vec::new()
    } else {
        match ledger.consistency_proof(old, cp.size).await {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(format!("consistency proof: {e}")),
        }
    };
    let mut body = format!("old {old}\n");
    for h in &proof {
        body.push_str(&base64::engine::general_purpose::STANDARD.encode(h.0));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(&cp.note);
    let res = match w.client.post(&w.url).body(body).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("request: {}", e.without_url())),
    };
    let status = res.status().as_u16();
    let size_body = res
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(SIZE_CONTENT_TYPE.as_bytes()));
    let Ok(text) = res.text().await else {
        return Outcome::Failed("unreadable answer".into());
    };
    match status {
        200 => {
            let Ok(note) = signed_note::Note::from_bytes(cp.note.as_bytes()) else {
                return Outcome::Failed("the checkpoint note does not parse".into());
            };
            text.lines()
                .find(|l| w.key.check(note.text(), l).is_some())
                .map(|l| Outcome::Cosigned(format!("{l}\n")))
                .unwrap_or(Outcome::Failed(
                    "no valid cosignature by its key in the answer".into(),
                ))
        }
        409 if size_body => match text.trim_end_matches('\n').parse() {
            Ok(size) => Outcome::Conflict(size),
            Err(_) => Outcome::Failed("409 without a size".into()),
        },
        422 => Outcome::Refused,
        s => Outcome::Failed(format!("status {s}")),
    }
}
