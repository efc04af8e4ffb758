//! A log entry and its canonical leaf bytes.
//!
//! Leaf bytes are the compact JSON serialisation of [`Entry`]: keys in the
//! order of the struct below, no whitespace, `null` for absent values, lists
//! sorted where order carries no meaning. They hold no personal value
//! (invariant 4): data subjects appear as keyed pseudonyms, disclosed fields
//! by name. `decode` accepts only bytes that re-encode identically, so there
//! is exactly one encoding of every entry.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::crypto::{TraceRef, UserRef};

pub const VERSION: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry {
    /// Encoding version (1).
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

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("entries serialise")
    }

    /// Parses leaf bytes, accepting only the canonical encoding.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let e: Entry = serde_json::from_slice(bytes).ok()?;
        (e.encode() == bytes).then_some(e)
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

    #[test]
    fn encoding_is_canonical_and_documented() {
        let e = sample(7);
        let bytes = e.encode();
        assert_eq!(Entry::decode(&bytes), Some(e));
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"v":1,"index":7,"time":"2026-11-28T18:00:00.000Z","requestId":"#),
            "{text}"
        );
        assert!(
            text.ends_with(r#""policyRevision":"sha256:00","outcome":"disclosed"}"#),
            "{text}"
        );
        // Whitespace, reordered keys or unknown keys are not the canonical form.
        let spaced = text.replacen(":7,", ": 7,", 1);
        assert_eq!(Entry::decode(spaced.as_bytes()), None);
        let extra = text.replacen("{\"v\":1,", "{\"v\":1,\"x\":0,", 1);
        assert_eq!(Entry::decode(extra.as_bytes()), None);
    }
}
