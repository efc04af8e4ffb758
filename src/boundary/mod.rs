//! Invariant 1, the RIEC boundary: no personal data reaches a partner outside
//! the covenant. Three independent layers, each enough on its own:
//!
//! 1. the policy gives non-members mode `aggregate` at most (`policies/`,
//!    and `Decision::sanitised` refuses a record to a non-member caller or
//!    recipient);
//! 2. this module's route gate ([`members_only`]) keeps non-member
//!    principals off every route but their own identity, the log's hashes
//!    and their own aggregate entries, and the phenomenon tables — before
//!    any handler runs;
//! 3. the egress guard ([`egress_guard`]) scans every response body sent to
//!    a non-member for personal-data patterns and for the fingerprints of
//!    every value stored with a signal, and blocks the response if it finds
//!    one — even if layers 1 and 2 were broken.

pub mod fingerprint;
pub mod scan;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::Principal;
use crate::ledger::{Actor, Ledger, Outcome, RefusalSite, log_refusal};
use crate::policy::PolicyEngine;
use crate::problem::Problem;
use crate::store::Db;
pub use fingerprint::{EGRESS_KEY, Fingerprinter, Known};
use scan::Finding;

/// What a referral delivers to its recipient — the policy's mode carried
/// out (layer 1): a member gets a copy of its projection in its inbox; a
/// non-member gets no record at all, the signal only counts towards the
/// phenomenon tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    InboxCopy,
    PhenomenonCount,
}

impl Delivery {
    pub fn of(decision: &crate::policy::Decision) -> Self {
        if decision.mode == crate::policy::Mode::Aggregate {
            Self::PhenomenonCount
        } else {
            Self::InboxCopy
        }
    }
}

/// The largest body the guard inspects; a larger one is blocked.
const MAX_INSPECTED: usize = 32 * 1024 * 1024;

/// Whether a principal is a covenant member, by the policies in force
/// ([`policy::model::is_member`](crate::policy::model::is_member): the
/// registry flag AND the kind's membership).
pub fn is_member(policy: &PolicyEngine, p: &Principal) -> bool {
    crate::policy::model::is_member(policy.current().data(), p.partner.member, &p.partner.kind)
}

/// What the boundary's layers need: the policies in force (membership), the
/// egress guard, and the log their refusals are written to.
#[derive(Clone)]
pub struct Boundary(std::sync::Arc<BoundaryParts>);

struct BoundaryParts {
    policy: PolicyEngine,
    egress: EgressGuard,
    ledger: Ledger,
}

impl Boundary {
    pub fn new(policy: PolicyEngine, egress: EgressGuard, ledger: Ledger) -> Self {
        Self(std::sync::Arc::new(BoundaryParts {
            policy,
            egress,
            ledger,
        }))
    }
}

/// Route layer on every route a non-member may not reach (layer 2): covenant
/// members only. A refusal is logged.
pub async fn members_only(State(b): State<Boundary>, req: Request, next: Next) -> Response {
    let b = &b.0;
    let Some(principal) = req.extensions().get::<Principal>().cloned() else {
        return Problem::unauthorized("token-missing").into_response();
    };
    if is_member(&b.policy, &principal) {
        return next.run(req).await;
    }
    metrics::counter!("ketenpoort_boundary_refusals_total").increment(1);
    tracing::warn!("non-member principal refused on a members-only route");
    let site = RefusalSite::of(req.extensions());
    let reasons = vec!["non-member-record-route".into()];
    let actor = Actor::from(&principal);
    if let Err(p) = log_refusal(&b.ledger, &site, actor, reasons, Outcome::Denied).await {
        return p.into_response();
    }
    Problem::forbidden(
        "non-member-record-route",
        "partners outside the covenant receive phenomenon tables only",
    )
    .into_response()
}

/// The egress guard's view of stored values.
#[derive(Clone)]
pub struct EgressGuard {
    db: Db,
    fingerprints: Fingerprinter,
    /// Pattern scans of bodies, by SHA-256 of the body. A scan is a pure
    /// function of the bytes, and the RIEC reads the same immutable
    /// releases over and over; the lookup of stored values still runs on
    /// every response, since what is stored changes.
    scans: std::sync::Arc<quick_cache::sync::Cache<[u8; 32], std::sync::Arc<BodyScan>>>,
}

/// What scanning a body found: a pattern, or the fingerprints of the
/// values that must be looked up among the stored ones.
struct BodyScan {
    finding: Option<Finding>,
    fingerprints: Vec<Vec<u8>>,
}

/// Distinct response bodies whose scans are remembered.
const SCAN_CACHE: usize = 1_000;

impl EgressGuard {
    pub fn new(db: Db, secret: &[u8; 32]) -> Self {
        Self {
            db,
            fingerprints: Fingerprinter::new(secret),
            scans: std::sync::Arc::new(quick_cache::sync::Cache::new(SCAN_CACHE)),
        }
    }

    fn scan_body(&self, body: &[u8]) -> std::sync::Arc<BodyScan> {
        let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, body)
            .as_ref()
            .try_into()
            .expect("sha256");
        if let Some(scan) = self.scans.get(&key) {
            return scan;
        }
        let found = scan::scan_body(body);
        let candidates: Vec<Known> = found.candidates.into_iter().collect();
        let scan = std::sync::Arc::new(BodyScan {
            finding: found.finding,
            fingerprints: self.fingerprints.all(&candidates),
        });
        self.scans.insert(key, scan.clone());
        scan
    }

    /// Fingerprints of what the guard must recognise, for the store.
    pub fn fingerprints(&self, known: &[Known]) -> Vec<Vec<u8>> {
        self.fingerprints.all(known)
    }

    /// What, if anything, in these headers and body must not reach a
    /// non-member. A database error is an error: the caller blocks.
    pub async fn inspect(
        &self,
        headers: &axum::http::HeaderMap,
        body: &[u8],
    ) -> Result<Option<Finding>, sqlx::Error> {
        let body_scan = self.scan_body(body);
        if body_scan.finding.is_some() {
            return Ok(body_scan.finding);
        }
        let mut in_headers = scan::Scan::default();
        for value in headers.values() {
            scan::scan_text(&String::from_utf8_lossy(value.as_bytes()), &mut in_headers);
        }
        if in_headers.finding.is_some() {
            return Ok(in_headers.finding);
        }
        let header_values: Vec<Known> = in_headers.candidates.into_iter().collect();
        let mut hashes = self.fingerprints.all(&header_values);
        hashes.extend(body_scan.fingerprints.iter().cloned());
        let known = self.db.known_fingerprints(&hashes).await?;
        Ok((!known.is_empty()).then_some(Finding::Known))
    }
}

/// Layer 3, on every authenticated route: a response to a non-member is
/// buffered and inspected before it leaves. A hit replaces it with a bare
/// problem, raises `ketenpoort_egress_blocked_total` and logs a `deny`
/// entry with outcome `blocked` (after the handler's own entry for the same
/// request id, which recorded what was decided, not what left).
pub async fn egress_guard(State(b): State<Boundary>, req: Request, next: Next) -> Response {
    let b = &b.0;
    let Some(principal) = req
        .extensions()
        .get::<Principal>()
        .filter(|p| !is_member(&b.policy, p))
        .cloned()
    else {
        return next.run(req).await;
    };
    let site = RefusalSite::of(req.extensions());
    let (parts, body) = next.run(req).await.into_parts();
    let finding = match axum::body::to_bytes(body, MAX_INSPECTED).await {
        Err(_) => Some(Finding::Unreadable),
        Ok(bytes) => match b.egress.inspect(&parts.headers, &bytes).await {
            Ok(None) => return Response::from_parts(parts, Body::from(bytes)),
            Ok(finding) => finding,
            Err(e) => {
                return Problem::from(e)
                    .detail("the response could not be checked; nothing was disclosed")
                    .into_response();
            }
        },
    };
    let code = finding.map_or("unknown", Finding::code);
    metrics::counter!("ketenpoort_egress_blocked_total", "finding" => code).increment(1);
    tracing::error!(
        finding = code,
        route = site.template(),
        "egress guard blocked a response to a non-member"
    );
    let reasons = vec!["egress-blocked".into(), format!("egress:{code}")];
    let actor = Actor::from(&principal);
    if let Err(p) = log_refusal(&b.ledger, &site, actor, reasons, Outcome::Blocked).await {
        return p.into_response();
    }
    Problem::forbidden(
        "egress-blocked",
        "the response was withheld because it looked like personal data; the operator has been alerted",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A guard over a store holding the example signal's fingerprints,
    /// with a victim whose BSN starts with 0 and a pseudonym.
    async fn guard() -> (EgressGuard, Value, String) {
        let db = Db::connect("sqlite::memory:", 1).await.unwrap();
        db.migrate().await.unwrap();
        let mut body: Value =
            serde_json::from_str(include_str!("../../examples/signal.json")).unwrap();
        body["victims"][0]["bsn"] = json!("012345672");
        let id = "0193a4e2-7c1d-7a00-8000-1234567890ab".to_owned();
        let pseudonym = "ps1:k3VfXq0lO3d1K2J5m8QnR7sT4uV6wY0zAbCdEfGhIjK".to_owned();
        let guard = EgressGuard::new(db.clone(), &[5; 32]);
        let known = fingerprint::of_signal(&id, &body, std::slice::from_ref(&pseudonym));
        let mut tx = db.begin_write().await.unwrap();
        tx.insert_fingerprints(&id, &guard.fingerprints(&known))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        (guard, body, id)
    }

    async fn inspect(g: &EgressGuard, body: &str) -> Option<Finding> {
        g.inspect(&axum::http::HeaderMap::new(), body.as_bytes())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn stored_values_are_recognised_in_every_form_and_position() {
        let (g, record, id) = guard().await;
        // A whole record, as a broken layer 1 and 2 would send it.
        assert!(inspect(&g, &record.to_string()).await.is_some());
        // Values no pattern catches, only the fingerprints.
        for body in [
            r#"{"x":"voorbeeld slachtoffer"}"#.to_owned(),
            r#"{"VOORBEELD-SLACHTOFFER":1}"#.to_owned(),
            r#"[[{"n":"VoorbeeldSlachtoffer"}]]"#.to_owned(),
            r#"{"t":"gesprek met Voorbeeld   Verdachte gisteren"}"#.to_owned(),
            r#"{"bedrijf":"voorbeeld uitzendbureau bv"}"#.to_owned(),
            r#"{"inner":"{\"bsn\":12345672}"}"#.to_owned(),
            r#"{"phone":"31600000000"}"#.to_owned(),
            format!(r#"{{"ids":["{}"]}}"#, id.to_uppercase().replace('-', "")),
            format!(r#"{{"r":"signal:{id}"}}"#),
            r#"{"s":"k3VfXq0lO3d1K2J5m8QnR7sT4uV6wY0zAbCdEfGhIjK"}"#.to_owned(),
            "plain text: Voorbeeld Slachtoffer".to_owned(),
        ] {
            assert_eq!(inspect(&g, &body).await, Some(Finding::Known), "{body}");
        }
        // A header is inspected too.
        let mut h = axum::http::HeaderMap::new();
        h.insert("location", format!("/v1/signals/{id}").parse().unwrap());
        assert_eq!(g.inspect(&h, b"{}").await.unwrap(), Some(Finding::Known));
        // Other people, other ids, and the words apart pass.
        for body in [
            r#"{"x":"Voorbeeld Anders","y":"Slachtoffer"}"#,
            r#"{"r":"signal:0193a4e2-7c1d-7a00-8000-000000000000"}"#,
            r#"{"value":12,"categories":["arbeid","totaal"]}"#,
        ] {
            assert_eq!(inspect(&g, body).await, None, "{body}");
        }
    }

    /// A remembered scan never hides a value stored after it: the body that
    /// passed is blocked once the value is stored, and a pattern found once
    /// is found every time.
    #[tokio::test]
    async fn remembered_scans_still_see_new_stored_values() {
        let (g, _, _) = guard().await;
        let body = r#"{"x":"Lateris Novum"}"#;
        assert_eq!(inspect(&g, body).await, None);
        assert_eq!(inspect(&g, body).await, None, "from the remembered scan");
        let later = fingerprint::names("Lateris Novum");
        let mut tx = g.db.begin_write().await.unwrap();
        tx.insert_fingerprints(
            "0193a4e2-7c1d-7a00-8000-0000000000ff",
            &g.fingerprints(&later),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(inspect(&g, body).await, Some(Finding::Known));
        let pattern = r#"{"mail":"iemand@example.org"}"#;
        let first = inspect(&g, pattern).await;
        assert!(first.is_some());
        assert_eq!(inspect(&g, pattern).await, first);
    }
}
