//! The policy input and decision as Rust types. Their JSON Schemas are
//! generated into `policies/schema/` (`ketenpoort policy schema`), so policy
//! authors see exactly what they receive and must return.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What is being attempted. Chooses the policy entrypoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Submit,
    Read,
    List,
    Refer,
    Deliver,
    AuditQuery,
    ReleaseAggregate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::Read => "read",
            Self::List => "list",
            Self::Refer => "refer",
            Self::Deliver => "deliver",
            Self::AuditQuery => "audit-query",
            Self::ReleaseAggregate => "release-aggregate",
        }
    }

    pub fn entrypoint(self) -> &'static str {
        match self {
            Self::Submit | Self::Read | Self::List | Self::Refer | Self::Deliver => ENTRY_EXCHANGE,
            Self::AuditQuery => ENTRY_AUDIT,
            Self::ReleaseAggregate => ENTRY_PHENOMENA,
        }
    }
}

pub const ENTRY_EXCHANGE: &str = "data.ketenpoort.exchange.decision";
pub const ENTRY_AUDIT: &str = "data.ketenpoort.audit.decision";
pub const ENTRY_PHENOMENA: &str = "data.ketenpoort.phenomena.decision";
pub const ENTRYPOINTS: [&str; 3] = [ENTRY_EXCHANGE, ENTRY_AUDIT, ENTRY_PHENOMENA];

/// The policy input: never a personal value, only facts about the parties,
/// the purpose and the record.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    pub action: Action,
    /// Purpose id from the `Ketenpoort-Purpose` header.
    pub purpose: String,
    pub principal: Party,
    /// The receiving partner of a `submit` (the ZVHD) or a `refer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Party>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditInput>,
}

/// A partner as the registry knows it; `role` only for the caller.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Party {
    pub partner: String,
    pub kind: String,
    pub member: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub status: String,
}

/// Non-identifying facts about one signal.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalFacts {
    pub reporter: String,
    pub municipality: String,
    pub forms: Vec<String>,
    pub victim_minor: bool,
    pub domestic_setting: bool,
    pub referrals: Vec<ReferralFact>,
    pub status: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ReferralFact {
    pub partner: String,
    pub purpose: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditInput {
    pub query: AuditQuery,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditQuery {
    /// `GET /v1/log/entries`
    Entries,
    Search,
    Subject,
    Export,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Full,
    Masked,
    Aggregate,
    Deny,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    All,
    Own,
    OwnAggregate,
}

/// One decision object for every action.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Decision {
    pub allow: bool,
    pub mode: Mode,
    /// Field paths the recipient may receive (`full`/`masked` only).
    pub fields: Vec<String>,
    /// Stable codes: `grant:<id>` on allow, deny reasons otherwise.
    pub reasons: Vec<String>,
    pub legal_basis: Option<String>,
    /// Which log entries an `audit-query` may see.
    pub scope: Option<Scope>,
    /// Hash of the policy bundle that decided. Set by ketenpoort, not Rego.
    #[serde(default)]
    pub revision: String,
}

impl Decision {
    pub fn deny(reason: &str, revision: &str) -> Self {
        Self {
            allow: false,
            mode: Mode::Deny,
            fields: Vec::new(),
            reasons: vec![reason.to_owned()],
            legal_basis: None,
            scope: None,
            revision: revision.to_owned(),
        }
    }

    /// Fail closed on anything a well-formed policy would not return: an
    /// allow without a mode to serve, or record fields for a non-member.
    pub fn sanitised(mut self, input: &Input) -> Self {
        let incoherent = (self.allow == (self.mode == Mode::Deny))
            || (!input.principal.member && !matches!(self.mode, Mode::Aggregate | Mode::Deny))
            || (matches!(self.mode, Mode::Aggregate | Mode::Deny) && !self.fields.is_empty());
        if incoherent {
            return Self::deny("policy-incoherent", &self.revision);
        }
        if !self.allow {
            self.legal_basis = None;
            self.scope = None;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(member: bool) -> Input {
        Input {
            action: Action::Read,
            purpose: "drieluik".into(),
            principal: Party {
                partner: "x".into(),
                kind: "riec".into(),
                member,
                role: Some("analist".into()),
                status: "active".into(),
            },
            recipient: None,
            signal: None,
            audit: None,
        }
    }

    fn decision(mode: Mode, fields: &[&str]) -> Decision {
        Decision {
            allow: mode != Mode::Deny,
            mode,
            fields: fields.iter().map(|f| f.to_string()).collect(),
            reasons: vec![],
            legal_basis: Some("x".into()),
            scope: None,
            revision: "r".into(),
        }
    }

    #[test]
    fn a_non_member_never_gets_record_fields_whatever_the_policy_says() {
        for mode in [Mode::Full, Mode::Masked] {
            let d = decision(mode, &["victims.name"]).sanitised(&input(false));
            assert!(!d.allow);
            assert_eq!(d.mode, Mode::Deny);
            assert_eq!(d.reasons, vec!["policy-incoherent"]);
        }
        assert!(
            decision(Mode::Aggregate, &[])
                .sanitised(&input(false))
                .allow
        );
        assert!(
            !decision(Mode::Aggregate, &["forms"])
                .sanitised(&input(false))
                .allow
        );
    }

    #[test]
    fn allow_and_mode_must_agree() {
        let mut d = decision(Mode::Full, &["forms"]);
        d.allow = false;
        assert_eq!(
            d.clone().sanitised(&input(true)).reasons,
            vec!["policy-incoherent"]
        );
        let mut d = decision(Mode::Deny, &[]);
        d.allow = true;
        assert!(!d.sanitised(&input(true)).allow);
    }
}

#[cfg(test)]
mod schema_files {
    /// `policies/schema/` must be what the types generate
    /// (regenerate with `ketenpoort policy schema`).
    #[test]
    fn committed_schemas_match_the_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/schema");
        for (name, schema) in [
            ("input.json", schemars::schema_for!(super::Input)),
            ("decision.json", schemars::schema_for!(super::Decision)),
        ] {
            let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            let committed = std::fs::read_to_string(dir.join(name)).unwrap();
            assert_eq!(
                committed, generated,
                "policies/schema/{name} is stale: run `ketenpoort policy schema`"
            );
        }
    }
}
