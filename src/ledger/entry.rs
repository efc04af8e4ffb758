//! A log entry and its canonical leaf bytes.
//!
//! [`Entry`] is the entry as readers see it, every field name included.
//! Its leaf bytes are compact JSON: keys in a fixed order, no whitespace,
//! `null` for absent values, lists sorted where order carries no meaning.
//! They hold no personal value (invariant 4): data subjects appear as keyed
//! pseudonyms, disclosed fields by name. `decode` accepts only bytes that
//! re-encode identically, so there is exactly one encoding of every entry.
//!
//! Two leaf versions:
//!
//! - **v1** (logs written before migration 0018): the serialisation of
//!   [`Entry`] itself, every field name inline (a full-record read lists 35).
//!   Still decoded and verified; never written any more, never rewritten.
//! - **v2** (written now): what the policy granted — revision, legal basis,
//!   mode, reasons and field names, a [`Projection`] — is stored once in
//!   `log_projections`, and the leaf names it by the SHA-256 of its bytes
//!   (`"projection":"<64 hex>"`, `null` where no policy ran and nothing was
//!   granted). The hash is inside the leaf, so the Merkle tree covers the
//!   projection: a changed projection row no longer hashes to its name, and
//!   a swapped name changes the leaf. Written before migration 0021; read
//!   and verified, never rewritten.
//! - **v3** (written now): v2's items, the projection's name included, as
//!   one CBOR array in the deterministic encoding, ids and hashes as bytes
//!   ([`super::compact`]): a full-record read is about half its v2 size.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::compact::Compact;

use crate::crypto::{TraceRef, UserRef};
pub use crate::store::ledger::ProjectionRow;
use crate::store::ledger::StoredEntry;

/// The leaf version of entries with every field inline (read, not written).
pub const V1: u8 = 1;
/// JSON text naming the grant by projection hash (read, not written).
pub const V2: u8 = 2;
/// The leaf version written now: v2's items as one deterministic CBOR
/// array ([`super::compact`]).
pub const VERSION: u8 = 3;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry {
    /// Leaf version (1, 2 or 3) of the stored bytes.
    pub v: u8,
    /// Position in the log, from 0, without gaps.
    pub index: u64,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub request_id: String,
    /// The reference of the request's W3C trace id (a keyed hash in the
    /// trace id's shape; never the caller's 32 characters).
    #[schema(value_type = String)]
    pub trace_id: TraceRef,
    pub actor: Actor,
    /// The partner that received data (for reads, the actor's partner).
    pub recipient: Option<String>,
    pub action: LogAction,
    pub purpose: Option<String>,
    pub legal_basis: Option<String>,
    /// `signal:<id>`, `inbox:<id>`, `release:<id>`, `route:<template>`, `log`,
    /// `log:<start>-<end>`, `log-query:<filter>=<value>`.
    pub resources: Vec<String>,
    /// Pseudonyms (`ps1:...`) of the data subjects concerned.
    pub subjects: Vec<String>,
    /// Names of the disclosed fields, never their values.
    pub fields: Vec<String>,
    pub decision: DecisionRecord,
    pub policy_revision: Option<String>,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub partner: String,
    /// A role of the covenant, or `?` for a token's unknown role.
    pub role: String,
    /// The user's reference (`usr1:...`), never the token's `sub`.
    #[schema(value_type = Option<String>)]
    pub user: Option<UserRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecord {
    /// `full`, `masked`, `aggregate`, `deny`, or `none` where no policy ran.
    pub mode: String,
    pub reasons: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LogAction {
    Submit,
    Read,
    List,
    Refer,
    Deliver,
    ReleaseAggregate,
    AuditQuery,
    /// Refused at the boundary before any handler ran.
    Deny,
    Assess,
    Correct,
    History,
    Transition,
    Track,
    Feedback,
    /// The reporter asked the ZVHD to correct its signal.
    RequestCorrection,
    /// The ZVHD read a signal's correction requests.
    ReviewCorrections,
    /// A token issued to a partner system at the token endpoint (or
    /// refused to a registered one).
    IssueToken,
}

/// The log's name for what was attempted: the policy's action, or `deny`
/// for a refusal before any decision (authentication, the route gate).
impl From<crate::policy::Action> for LogAction {
    fn from(a: crate::policy::Action) -> Self {
        use crate::policy::Action;
        match a {
            Action::Submit => Self::Submit,
            Action::Read => Self::Read,
            Action::List => Self::List,
            Action::Refer => Self::Refer,
            Action::Deliver => Self::Deliver,
            Action::AuditQuery => Self::AuditQuery,
            Action::ReleaseAggregate => Self::ReleaseAggregate,
            Action::Assess => Self::Assess,
            Action::Correct => Self::Correct,
            Action::History => Self::History,
            Action::Transition => Self::Transition,
            Action::Track => Self::Track,
            Action::Feedback => Self::Feedback,
            Action::RequestCorrection => Self::RequestCorrection,
            Action::ReviewCorrections => Self::ReviewCorrections,
        }
    }
}

impl LogAction {
    pub const ALL: [Self; 17] = [
        Self::Submit,
        Self::Read,
        Self::List,
        Self::Refer,
        Self::Deliver,
        Self::ReleaseAggregate,
        Self::AuditQuery,
        Self::Deny,
        Self::Assess,
        Self::Correct,
        Self::History,
        Self::Transition,
        Self::Track,
        Self::Feedback,
        Self::RequestCorrection,
        Self::ReviewCorrections,
        Self::IssueToken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::Read => "read",
            Self::List => "list",
            Self::Refer => "refer",
            Self::Deliver => "deliver",
            Self::ReleaseAggregate => "release-aggregate",
            Self::AuditQuery => "audit-query",
            Self::Deny => "deny",
            Self::Assess => "assess",
            Self::Correct => "correct",
            Self::History => "history",
            Self::Transition => "transition",
            Self::Track => "track",
            Self::Feedback => "feedback",
            Self::RequestCorrection => "request-correction",
            Self::ReviewCorrections => "review-corrections",
            Self::IssueToken => "issue-token",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Data left the gateway (or was stored for the recipient).
    Disclosed,
    /// The policy or the boundary refused; nothing was disclosed.
    Denied,
    /// The egress guard stopped a response; nothing was disclosed.
    Blocked,
}

impl Outcome {
    pub const ALL: [Self; 3] = [Self::Disclosed, Self::Denied, Self::Blocked];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disclosed => "disclosed",
            Self::Denied => "denied",
            Self::Blocked => "blocked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// What the policy granted an entry, stored once and named by the SHA-256
/// of its canonical bytes (compact JSON, keys in this order). Field names,
/// reason codes, a legal basis and a revision: nothing about a person, so
/// it is not personal data and no retention applies to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Projection {
    pub policy_revision: Option<String>,
    pub legal_basis: Option<String>,
    pub decision: DecisionRecord,
    pub fields: Vec<String>,
}

/// The entries as the store reads them back, decoded (readers: the FG's
/// API, the export, the console).
impl StoredEntry {
    /// The entry as readers see it, field names and all; `None` if the
    /// leaf is not canonical or its projection is missing or altered
    /// (`log verify` names which).
    pub fn entry(&self) -> Option<Entry> {
        Entry::decode(&self.leaf, self.projection.as_deref())
    }
}

impl Projection {
    /// No policy ran and nothing was granted: a v2 leaf names no projection.
    fn is_none(&self) -> bool {
        self.policy_revision.is_none()
            && self.legal_basis.is_none()
            && self.decision.mode == "none"
            && self.decision.reasons.is_empty()
            && self.fields.is_empty()
    }

    fn none() -> Self {
        Self {
            policy_revision: None,
            legal_basis: None,
            decision: DecisionRecord {
                mode: "none".into(),
                reasons: Vec::new(),
            },
            fields: Vec::new(),
        }
    }

    pub fn row(&self) -> ProjectionRow {
        let body = serde_json::to_vec(self).expect("projections serialise");
        ProjectionRow {
            hash: Self::hash(&body),
            body,
        }
    }

    pub fn hash(body: &[u8]) -> [u8; 32] {
        ring::digest::digest(&ring::digest::SHA256, body)
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes")
    }

    /// Parses a stored projection's bytes: only the canonical encoding of
    /// a projection a leaf can name (not the empty one).
    pub fn decode(body: &[u8]) -> Option<Self> {
        let p: Self = serde_json::from_slice(body).ok()?;
        let canonical = serde_json::to_vec(&p).ok()? == body && !p.is_none();
        canonical.then_some(p)
    }
}

/// The v2 leaf, serialised from an entry (borrowing).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LeafV2Ref<'a> {
    v: u8,
    index: u64,
    time: &'a str,
    request_id: &'a str,
    trace_id: &'a TraceRef,
    actor: &'a Actor,
    recipient: &'a Option<String>,
    action: LogAction,
    purpose: &'a Option<String>,
    resources: &'a [String],
    subjects: &'a [String],
    projection: Option<String>,
    outcome: Outcome,
}

/// The v2 leaf, parsed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LeafV2 {
    v: u8,
    index: u64,
    time: String,
    request_id: String,
    trace_id: TraceRef,
    actor: Actor,
    recipient: Option<String>,
    action: LogAction,
    purpose: Option<String>,
    resources: Vec<String>,
    subjects: Vec<String>,
    projection: Option<String>,
    outcome: Outcome,
}

impl Entry {
    /// What the policy granted this entry.
    pub fn projection(&self) -> Projection {
        Projection {
            policy_revision: self.policy_revision.clone(),
            legal_basis: self.legal_basis.clone(),
            decision: self.decision.clone(),
            fields: self.fields.clone(),
        }
    }

    /// The leaf bytes and, for a v2 entry that names one, the projection
    /// row to store with it.
    pub fn leaf(&self) -> (Vec<u8>, Option<ProjectionRow>) {
        if self.v == V1 {
            return (serde_json::to_vec(self).expect("entries serialise"), None);
        }
        let p = self.projection();
        let row = (!p.is_none()).then(|| p.row());
        if self.v != V2 {
            return (self.compact(row.as_ref().map(|r| r.hash)).encode(), row);
        }
        let leaf = LeafV2Ref {
            v: self.v,
            index: self.index,
            time: &self.time,
            request_id: &self.request_id,
            trace_id: &self.trace_id,
            actor: &self.actor,
            recipient: &self.recipient,
            action: self.action,
            purpose: &self.purpose,
            resources: &self.resources,
            subjects: &self.subjects,
            projection: row.as_ref().map(|r| hex::encode(r.hash)),
            outcome: self.outcome,
        };
        (serde_json::to_vec(&leaf).expect("entries serialise"), row)
    }

    pub fn encode(&self) -> Vec<u8> {
        self.leaf().0
    }

    /// The v3 leaf's items, borrowed from the entry.
    fn compact(&self, projection: Option<[u8; 32]>) -> Compact<'_> {
        let b = Cow::Borrowed;
        Compact {
            index: self.index,
            time: b(&self.time),
            request_id: b(&self.request_id),
            trace_id: b(self.trace_id.as_str()),
            partner: b(&self.actor.partner),
            role: b(&self.actor.role),
            user: self.actor.user.as_ref().map(|u| b(u.as_str())),
            recipient: self.recipient.as_deref().map(b),
            action: self.action,
            purpose: self.purpose.as_deref().map(b),
            resources: self.resources.iter().map(|s| b(s)).collect(),
            subjects: self.subjects.iter().map(|s| b(s)).collect(),
            projection,
            outcome: self.outcome,
        }
    }

    /// The projection a v2 or v3 leaf names, from its stored bytes: the
    /// empty one where it names none; `None` if the bytes are missing, do
    /// not hash to the name, or are not a canonical projection.
    fn named(name: Option<[u8; 32]>, body: Option<&[u8]>) -> Option<Projection> {
        match (name, body) {
            (None, None) => Some(Projection::none()),
            (Some(name), Some(body)) if name == Projection::hash(body) => Projection::decode(body),
            _ => None,
        }
    }

    /// Parses leaf bytes with the stored bytes of the projection the leaf
    /// names (`None` for a v1 leaf or a v2 leaf naming none), accepting
    /// only the canonical encoding, and only a projection whose bytes hash
    /// to the name in the leaf.
    pub fn decode(leaf: &[u8], projection: Option<&[u8]>) -> Option<Self> {
        let e = if leaf.starts_with(&super::compact::PREFIX) {
            let c = Compact::parse(leaf)?;
            let p = Self::named(c.projection, projection)?;
            let own = Cow::into_owned;
            Entry {
                v: VERSION,
                index: c.index,
                time: own(c.time),
                request_id: own(c.request_id),
                trace_id: TraceRef::stored(own(c.trace_id)),
                actor: Actor {
                    partner: own(c.partner),
                    role: own(c.role),
                    user: c.user.map(|u| UserRef::stored(own(u))),
                },
                recipient: c.recipient.map(own),
                action: c.action,
                purpose: c.purpose.map(own),
                legal_basis: p.legal_basis,
                resources: c.resources.into_iter().map(own).collect(),
                subjects: c.subjects.into_iter().map(own).collect(),
                fields: p.fields,
                decision: p.decision,
                policy_revision: p.policy_revision,
                outcome: c.outcome,
            }
        } else if leaf.starts_with(b"{\"v\":1,") {
            if projection.is_some() {
                return None;
            }
            serde_json::from_slice::<Entry>(leaf).ok()?
        } else if leaf.starts_with(b"{\"v\":2,") {
            let l: LeafV2 = serde_json::from_slice(leaf).ok()?;
            let name = match &l.projection {
                None => None,
                Some(hex_name) => {
                    let mut name = [0; 32];
                    hex::decode_to_slice(hex_name, &mut name).ok()?;
                    Some(name)
                }
            };
            let p = Self::named(name, projection)?;
            Entry {
                v: l.v,
                index: l.index,
                time: l.time,
                request_id: l.request_id,
                trace_id: l.trace_id,
                actor: l.actor,
                recipient: l.recipient,
                action: l.action,
                purpose: l.purpose,
                legal_basis: p.legal_basis,
                resources: l.resources,
                subjects: l.subjects,
                fields: p.fields,
                decision: p.decision,
                policy_revision: p.policy_revision,
                outcome: l.outcome,
            }
        } else {
            return None;
        };
        (e.encode() == leaf).then_some(e)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample(index: u64) -> Entry {
        Entry {
            v: VERSION,
            index,
            time: "2026-11-28T18:00:00.000Z".into(),
            request_id: "01933a4e-0000-7000-8000-000000000000".into(),
            trace_id: crate::crypto::Pseudonymizer::new(&[1; 32])
                .trace_ref("4bf92f3577b34da6a3ce929d0e0e4736"),
            actor: Actor {
                partner: "assen".into(),
                role: "aandachtfunctionaris-sociaal".into(),
                user: Some(crate::crypto::Pseudonymizer::new(&[1; 32]).user_ref("assen", "u1")),
            },
            recipient: Some("zvhd".into()),
            action: LogAction::Submit,
            purpose: Some("signalering".into()),
            legal_basis: Some("AVG art. 6(1)(e)".into()),
            resources: vec!["signal:0193".into()],
            subjects: vec!["ps1:abc".into()],
            fields: vec!["victims.name".into()],
            decision: DecisionRecord {
                mode: "full".into(),
                reasons: vec!["grant:x".into()],
            },
            policy_revision: Some("sha256:00".into()),
            outcome: Outcome::Disclosed,
        }
    }

    /// A read of a whole record: every field name of the covenant's
    /// classes (35), two subjects, the signal and its version.
    pub fn full_read(index: u64) -> Entry {
        let data: serde_json::Value =
            serde_json::from_str(include_str!("../../policies/data.json")).unwrap();
        let mut fields: Vec<String> = data["covenant"]["classes"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|v| v.as_array().unwrap().iter())
            .map(|f| f.as_str().unwrap().to_owned())
            .collect();
        fields.sort();
        let refs = crate::crypto::Pseudonymizer::new(&[7; 32]);
        let id = "01933a4e-7c1d-7000-8000-00000000beef";
        let ps = |bsn| {
            refs.pseudonym(&crate::crypto::SubjectId {
                bsn: Some(bsn),
                ..Default::default()
            })
            .unwrap()
        };
        let mut subjects = vec![ps("111222333"), ps("123456782")];
        subjects.sort();
        Entry {
            v: VERSION,
            index,
            time: "2026-12-04T21:14:07.123Z".into(),
            request_id: "01933a4e-7c1d-7000-8000-0000000abcde".into(),
            trace_id: refs.trace_ref("4bf92f3577b34da6a3ce929d0e0e4736"),
            actor: Actor {
                partner: "zvhd".into(),
                role: "ketenregisseur".into(),
                user: Some(refs.user_ref("zvhd", "k.de.vries")),
            },
            recipient: Some("zvhd".into()),
            action: LogAction::Read,
            purpose: Some("drieluik".into()),
            legal_basis: Some("Convenant ZVHD + addendum mensenhandel; AVG art. 6(1)(e)".into()),
            resources: vec![format!("signal:{id}"), format!("version:{id}/12")],
            subjects,
            fields,
            decision: DecisionRecord {
                mode: "full".into(),
                reasons: vec!["grant:zvhd-drieluik".into()],
            },
            policy_revision: Some(format!("sha256:{}", "ab".repeat(32))),
            outcome: Outcome::Disclosed,
        }
    }

    #[test]
    fn v1_leaves_decode_as_they_were_written() {
        let mut e = sample(7);
        e.v = V1;
        let bytes = e.encode();
        assert_eq!(Entry::decode(&bytes, None), Some(e.clone()));
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"v":1,"index":7,"time":"2026-11-28T18:00:00.000Z","requestId":"#),
            "{text}"
        );
        assert!(
            text.ends_with(r#""fields":["victims.name"],"decision":{"mode":"full","reasons":["grant:x"]},"policyRevision":"sha256:00","outcome":"disclosed"}"#),
            "{text}"
        );
        // Whitespace, reordered keys or unknown keys are not the canonical form.
        let spaced = text.replacen(":7,", ": 7,", 1);
        assert_eq!(Entry::decode(spaced.as_bytes(), None), None);
        let extra = text.replacen("{\"v\":1,", "{\"v\":1,\"x\":0,", 1);
        assert_eq!(Entry::decode(extra.as_bytes(), None), None);
        // A v1 leaf holds its fields itself: it names no projection.
        let p = e.projection().row();
        assert_eq!(Entry::decode(&bytes, Some(&p.body)), None);
    }

    #[test]
    fn v2_leaves_name_their_projection_by_hash() {
        let mut e = sample(7);
        e.v = V2;
        let (bytes, row) = e.leaf();
        let row = row.expect("a granted entry names a projection");
        let text = String::from_utf8(bytes.clone()).unwrap();
        let name = hex::encode(row.hash);
        assert_eq!(
            text,
            format!(
                r#"{{"v":2,"index":7,"time":"2026-11-28T18:00:00.000Z","requestId":"01933a4e-0000-7000-8000-000000000000","traceId":{},"actor":{{"partner":"assen","role":"aandachtfunctionaris-sociaal","user":"{}"}},"recipient":"zvhd","action":"submit","purpose":"signalering","resources":["signal:0193"],"subjects":["ps1:abc"],"projection":"{name}","outcome":"disclosed"}}"#,
                serde_json::to_string(&e.trace_id).unwrap(),
                e.actor.user.as_ref().unwrap().as_str()
            )
        );
        assert_eq!(
            String::from_utf8(row.body.clone()).unwrap(),
            r#"{"policyRevision":"sha256:00","legalBasis":"AVG art. 6(1)(e)","decision":{"mode":"full","reasons":["grant:x"]},"fields":["victims.name"]}"#
        );
        assert_eq!(
            name,
            hex::encode(ring::digest::digest(&ring::digest::SHA256, &row.body))
        );
        assert_eq!(Entry::decode(&bytes, Some(&row.body)), Some(e.clone()));
        // Without its projection, or with another one, it does not decode.
        assert_eq!(Entry::decode(&bytes, None), None);
        let mut other = e.clone();
        other.fields.push("victims.bsn".into());
        let swapped = other.projection().row();
        assert_eq!(Entry::decode(&bytes, Some(&swapped.body)), None);
        // A projection row whose bytes were edited (same shape) fails too.
        let edited = String::from_utf8(row.body.clone())
            .unwrap()
            .replace("victims.name", "victims.nxme");
        assert_eq!(Entry::decode(&bytes, Some(edited.as_bytes())), None);
        // A non-canonical projection body (spaces) does not hash to the name
        // and would not parse as canonical if it did.
        assert_eq!(Projection::decode(b"{\"policyRevision\": null}"), None);
    }

    #[test]
    fn an_entry_without_a_decision_names_no_projection() {
        let mut v2 = sample(3);
        v2.v = V2;
        let mut e = v2.clone();
        e.v = VERSION;
        for e in [v2, e] {
            names_no_projection(e);
        }
    }

    fn names_no_projection(mut e: Entry) {
        e.legal_basis = None;
        e.policy_revision = None;
        e.fields.clear();
        e.decision = DecisionRecord {
            mode: "none".into(),
            reasons: Vec::new(),
        };
        let (bytes, row) = e.leaf();
        assert_eq!(row, None);
        if e.v == V2 {
            assert!(
                String::from_utf8(bytes.clone())
                    .unwrap()
                    .contains(r#""projection":null,"#)
            );
        } else {
            // null (0xf6) at the projection's place, then the outcome.
            assert!(bytes.ends_with(b"\xf6\x69disclosed"), "{bytes:x?}");
        }
        assert_eq!(Entry::decode(&bytes, None), Some(e.clone()));
        // The empty projection is never stored or named.
        assert_eq!(Projection::decode(&e.projection().row().body), None);
    }

    /// v3 holds v2's items as CBOR: the same entry back, ids and hashes
    /// as bytes, one array any CBOR decoder reads.
    #[test]
    fn v3_leaves_are_deterministic_cbor() {
        let e = full_read(7);
        assert_eq!(e.v, VERSION);
        let (bytes, row) = e.leaf();
        let row = row.expect("a granted read names a projection");
        assert_eq!(Entry::decode(&bytes, Some(&row.body)), Some(e.clone()));
        assert_eq!(Entry::decode(&bytes, None), None);
        let mut other = e.clone();
        other.fields.pop();
        assert_eq!(
            Entry::decode(&bytes, Some(&other.projection().row().body)),
            None
        );
        // The items, read by a general CBOR decoder.
        let mut d = minicbor::Decoder::new(&bytes);
        assert_eq!(d.array().unwrap(), Some(15));
        assert_eq!(d.u64().unwrap(), 3);
        assert_eq!(d.u64().unwrap(), 7);
        assert_eq!(d.u64().unwrap(), 1_796_418_847_123, "the time in ms");
        let id = uuid::Uuid::parse_str(&e.request_id).unwrap();
        assert_eq!(d.bytes().unwrap(), id.as_bytes());
        assert_eq!(hex::encode(d.bytes().unwrap()), e.trace_id.as_str());
        assert_eq!(
            (d.str().unwrap(), d.str().unwrap()),
            ("zvhd", "ketenregisseur")
        );
        assert_eq!(d.bytes().unwrap().len(), 16, "the user reference");
        assert_eq!(d.str().unwrap(), "zvhd");
        assert_eq!(d.str().unwrap(), "read");
        assert_eq!(d.str().unwrap(), "drieluik");
        assert_eq!(d.array().unwrap(), Some(2));
        assert_eq!(d.str().unwrap(), e.resources[0]);
        d.skip().unwrap();
        assert_eq!(d.array().unwrap(), Some(2));
        assert_eq!(d.bytes().unwrap().len(), 32, "a pseudonym");
        d.skip().unwrap();
        assert_eq!(d.bytes().unwrap(), row.hash);
        assert_eq!(d.str().unwrap(), "disclosed");
        assert_eq!(d.position(), bytes.len());
        // Text that has a byte form is only ever stored as bytes; a
        // longer head, an indefinite length or a trailing byte is not the
        // canonical encoding, though a CBOR decoder reads each.
        let mut text_id = e.clone();
        text_id.request_id = e.request_id.to_uppercase();
        let upper = text_id.encode();
        assert_eq!(Entry::decode(&upper, Some(&row.body)), Some(text_id));
        let spelled = {
            let at = 2 + 1 + 9;
            let mut b = bytes[..at].to_vec();
            b.push(0x78);
            b.push(36);
            b.extend_from_slice(e.request_id.as_bytes());
            b.extend_from_slice(&bytes[at + 17..]);
            b
        };
        let mut indefinite = bytes.clone();
        indefinite[0] = 0x9f;
        indefinite.push(0xff);
        let mut long_head = bytes[..2].to_vec();
        long_head.extend_from_slice(&[0x18, 7]);
        long_head.extend_from_slice(&bytes[3..]);
        let mut trailing = bytes.clone();
        trailing.push(0);
        for (what, b) in [
            ("request id as text", spelled),
            ("indefinite array", indefinite),
            ("longer head", long_head),
            ("trailing byte", trailing),
        ] {
            assert!(minicbor::Decoder::new(&b).skip().is_ok(), "{what} is CBOR");
            assert_eq!(Entry::decode(&b, Some(&row.body)), None, "{what}");
            assert_eq!(crate::ledger::leaf::LeafView::parse(&b), None, "{what}");
        }
    }

    /// The size the log pays per disclosure: a full-record read's leaf no
    /// longer carries its 35 field names (they are in the projection), and
    /// its size does not depend on how many fields were disclosed.
    #[test]
    fn a_full_record_read_is_a_compact_leaf() {
        let e = full_read(1_000_000);
        assert_eq!(e.fields.len(), 35);
        let (v3, row) = e.leaf();
        let at = |v| {
            let mut old = e.clone();
            old.v = v;
            old.encode()
        };
        let (v1, v2) = (at(V1), at(V2));
        let row = row.unwrap();
        assert_eq!(Entry::decode(&v3, Some(&row.body)), Some(e.clone()));
        let mut one = e.clone();
        one.fields.truncate(1);
        assert_eq!(
            one.encode().len(),
            v3.len(),
            "a leaf's size is independent of the field count"
        );
        eprintln!(
            "full-record read: v1 {} bytes, v2 {} bytes, v3 {} bytes, projection {} bytes",
            v1.len(),
            v2.len(),
            v3.len(),
            row.body.len()
        );
        assert!(v1.len() > 1300, "v1 {}", v1.len());
        assert!(v2.len() < 650, "v2 {}", v2.len());
        assert!(v3.len() < 320, "v3 {}: {v3:x?}", v3.len());
    }
}
